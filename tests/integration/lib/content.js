'use strict';
// Reads the question banks in config/content so tests can answer quizzes
// right or wrong on purpose: answers.get('dvc01') -> 'B'.
const fs = require('node:fs');
const path = require('node:path');

// One field of every question in lang: loadField(root, 'vi', 'why').get('dvc01') -> its text.
function loadField(root, lang, field) {
  const dir = path.join(root, 'config/content', lang);
  const values = new Map();
  for (const f of fs.readdirSync(dir)) {
    if (f === 'messages.txt' || !f.endsWith('.txt')) continue;
    let id = null;
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const m = /^\s*([a-z_]+)\s*=\s*(.*)$/.exec(line);
      if (!m) continue;
      if (m[1] === 'id') id = m[2].trim();
      else if (m[1] === field && id) values.set(id, m[2].trim());
    }
  }
  return values;
}

function loadAnswers(root, lang = 'en') {
  const answers = loadField(root, lang, 'answer');
  for (const [id, a] of answers) answers.set(id, a.toUpperCase());
  return answers;
}

// "Q:<skill>:<id,id,...>:<index>:<score>..." -> {skill, ids, index}
function parseQuizState(state) {
  const p = (state || '').split(':');
  if (p[0] !== 'Q') return null;
  return { skill: Number(p[1]), ids: p[2].split(','), index: Number(p[3]), score: Number(p[4]) };
}

module.exports = { loadField, loadAnswers, parseQuizState };
