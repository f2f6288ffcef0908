//go:build !race

package e2e

// raceEnabled is true under go test -race: the server is then built with
// -race as well.
const raceEnabled = false
