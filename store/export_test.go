package store

// NormalizeStoredNames exposes migration 009's body to the external tests.
var NormalizeStoredNames = normalizeStoredNames
