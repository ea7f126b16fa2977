package store

// NormalizeStoredNames exposes migration 008's body to the external tests.
var NormalizeStoredNames = normalizeStoredNames
