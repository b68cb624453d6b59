//go:build !race

package verify

const memScale = 1
