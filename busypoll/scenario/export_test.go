package scenario

// ParseSize is parseSize, for the tests.
var ParseSize = parseSize
