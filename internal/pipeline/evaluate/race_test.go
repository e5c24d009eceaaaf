//go:build race

package evaluate_test

// raceEnabled scales randomized tests down under the race detector, which slows them
// tenfold; they still run.
const raceEnabled = true
