'use strict';
// Reads the question banks in config/content so tests can answer quizzes
// right or wrong on purpose: answers.get('dvc01') -> 'B'.
const fs = require('node:fs');
const path = require('node:path');

function loadAnswers(root, lang = 'en') {
  const dir = path.join(root, 'config/content', lang);
  const answers = new Map();
  for (const f of fs.readdirSync(dir)) {
    if (f === 'messages.txt' || !f.endsWith('.txt')) continue;
    let id = null;
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      const m = /^\s*([a-z_]+)\s*=\s*(.*)$/.exec(line);
      if (!m) continue;
      if (m[1] === 'id') id = m[2].trim();
      else if (m[1] === 'answer' && id) answers.set(id, m[2].trim().toUpperCase());
    }
  }
  return answers;
}

// "Q:<skill>:<id,id,...>:<index>:<score>..." -> {skill, ids, index}
function parseQuizState(state) {
  const p = (state || '').split(':');
  if (p[0] !== 'Q') return null;
  return { skill: Number(p[1]), ids: p[2].split(','), index: Number(p[3]), score: Number(p[4]) };
}

module.exports = { loadAnswers, parseQuizState };
