//go:build race

package verify

// The race detector roughly doubles allocations: memory bounds scale.
const memScale = 2
