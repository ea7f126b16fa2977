-- Tenant and resource names and rule methods are stored in their normal form
-- (resolver.NormalizeName: white space trimmed and collapsed, Unicode NFC,
-- case-folded). Unicode case folding cannot be written in SQL, so this
-- migration runs as Go code: store.normalizeStoredNames (store/names.go)
-- replaces this file's body when the migrations are loaded. It refuses, and
-- changes nothing, when two rows of an org would get the same name (or two
-- rules the same key with different permissions), or a name holds an
-- invisible character; the error lists them.
SELECT 1;
