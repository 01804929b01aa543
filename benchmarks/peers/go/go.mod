// armor's same-machine comparison against golang.org/x/time/rate.
//
// Built offline, in module mode, against the x/time sources Debian installs
// with golang-golang-x-time-dev: the replace directive below points the
// module at that directory, which has its own go.mod and no dependencies,
// so there is nothing to download and no go.sum to keep (a directory
// replacement is not checksummed). Go 1.19 (Debian 12) is the oldest Go this
// was tried with; run-peers sets GOPROXY=off and GOFLAGS=-mod=readonly so a
// build that would need the network fails instead of fetching anything, and
// GOTOOLCHAIN=local so a newer Go never tries to download another toolchain.
// GOPATH mode (GO111MODULE=off GOPATH=/usr/share/gocode) also works with
// Go 1.19 but is gone from newer Go releases, hence module mode.
//
// Elsewhere, run-peers rewrites this replacement into a copy of this file
// in its build directory when ARMOR_X_TIME_DIR names another x/time tree.
module armor.invalid/peers

go 1.19

require golang.org/x/time v0.3.0

replace golang.org/x/time => /usr/share/gocode/src/golang.org/x/time
