-- A sample of Vietnam's administrative codes (General Statistics Office list):
-- enough for demos and tests. The full list imports from CSV
-- (skillctl import-localities FILE.csv: code,level,parent_code,name).
INSERT INTO localities (code, level, parent_code, name) VALUES
    ('01', 'province', NULL, 'Thành phố Hà Nội'),
    ('001', 'district', '01', 'Quận Ba Đình'),
    ('00001', 'commune', '001', 'Phường Phúc Xá'),
    ('00004', 'commune', '001', 'Phường Trúc Bạch'),
    ('00006', 'commune', '001', 'Phường Vĩnh Phúc'),
    ('002', 'district', '01', 'Quận Hoàn Kiếm'),
    ('00037', 'commune', '002', 'Phường Phúc Tân'),
    ('00040', 'commune', '002', 'Phường Đồng Xuân'),
    ('02', 'province', NULL, 'Tỉnh Hà Giang'),
    ('024', 'district', '02', 'Thành phố Hà Giang'),
    ('00688', 'commune', '024', 'Phường Quang Trung'),
    ('00691', 'commune', '024', 'Phường Trần Phú'),
    ('79', 'province', NULL, 'Thành phố Hồ Chí Minh'),
    ('760', 'district', '79', 'Quận 1'),
    ('26734', 'commune', '760', 'Phường Tân Định'),
    ('26737', 'commune', '760', 'Phường Đa Kao');
