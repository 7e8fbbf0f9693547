-- Text-limit units were stored in Rust's Debug format (`lengthunit::utf16units`), which the
-- reply splitter did not recognize, so it counted characters: a Telegram reply under 4096
-- characters but over 4096 UTF-16 units was never split. Units are now stored by the names
-- the contract gives them (wit/v0.2/types.wit, `length-unit`); this rewrites stored manifests.
UPDATE plugins
SET manifest_json =
    replace(replace(replace(replace(replace(manifest_json,
        '"lengthunit::chars"', '"chars"'),
        '"lengthunit::utf16units"', '"utf16-units"'),
        '"lengthunit::graphemes"', '"graphemes"'),
        '"lengthunit::utf8bytes"', '"utf8-bytes"'),
        '"lengthunit::weighted"', '"weighted"')
WHERE manifest_json LIKE '%"lengthunit::%';
