-- Seed products, loaded once with the schema.
INSERT INTO products (name, description, price_cents) VALUES
    ('Ethernet cable', 'Cat 6, 2 m', 599),
    ('Patch panel', '24 ports, 1U', 4999),
    ('Network switch', '8 ports, unmanaged', 2999),
    ('Wi-Fi router', 'Dual band, four LAN ports', 7999),
    ('USB Ethernet adapter', 'Gigabit, USB-C', 1999),
    ('Crimping tool', 'For RJ45 plugs', 2499),
    ('RJ45 plugs', 'Pack of 50', 899),
    ('Cable tester', 'RJ45 and RJ11', 1599),
    ('Rack shelf', '19 inch, 1U', 3499),
    ('Fibre patch lead', 'LC-LC duplex, 3 m', 1299);
