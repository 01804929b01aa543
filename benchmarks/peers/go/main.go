//go:build linux

// Command peers measures golang.org/x/time/rate's Limiter in the scenarios
// that benchmarks/bench_token_bucket.cpp measures armor::token_bucket and a
// mutex bucket in, so that benchmarks/peers/run-peers can put them side by
// side as ratios from one run on one machine.
//
// Every case runs on 1 and on 2 goroutines sharing one limiter, each
// goroutine locked to its own OS thread. Like Google Benchmark, it repeats
// a case with more iterations until one run lasts at least -min-time, and
// reports that run:
//
//	cpu_ns   the goroutines' thread CPU time (CLOCK_THREAD_CPUTIME_ID),
//	         summed, divided by all their iterations: Google Benchmark's
//	         cpu_time, the figure docs/performance.md quotes;
//	real_ns  the goroutines' wall time, averaged, divided by all their
//	         iterations: Google Benchmark's real_time.
//
// Output: one JSON object per line, the first describing the run.
//
// Linux only (the thread CPU clock is read with a raw clock_gettime).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/time/rate"
)

// A rate and a burst large enough that every call is granted: a token per
// nanosecond, and 2^53 tokens (the largest count a float64 holds exactly,
// and far more than any run takes with a fixed time).
const (
	alwaysRate  = rate.Limit(1e9)
	alwaysBurst = 1 << 53
)

// A case's loop runs n iterations and returns how many went the wrong way
// (a denial where a grant was due, or the reverse). A case that returns
// more than zero is a broken benchmark, not a slow one.
type loopFunc func(n int) (wrong int)

type benchCase struct {
	name string
	// what the loop does, for the reader of the output
	what string
	loop loopFunc
	// one call, for testing.AllocsPerRun; nil for the floors
	once func()
}

func cases() []benchCase {
	// The limiters are shared by every run of a case, on 1 and 2 goroutines,
	// as bench_token_bucket.cpp's function-local static buckets are.
	start := time.Now()

	grantTimeGiven := rate.NewLimiter(alwaysRate, alwaysBurst)
	grantClock := rate.NewLimiter(alwaysRate, alwaysBurst)

	// One token an hour, burst 1, drained: every later call within the hour
	// is refused.
	drained := rate.NewLimiter(rate.Every(time.Hour), 1)
	drainedAt := time.Now()
	if !drained.AllowN(drainedAt, 1) {
		panic("could not drain the denying limiter")
	}

	var casWord struct {
		_ [64]byte
		v int64
		_ [64]byte
	}
	var timeSink, monoSink int64

	return []benchCase{
		{
			name: "go_granted_time_given",
			what: "lim.AllowN(t, 1) with a fixed t, always granted",
			loop: func(n int) int {
				// A fixed time: elapsed is 0, so no refill, and the burst
				// outlasts any run. Advancing t with t.Add would add Go's
				// Time arithmetic to the loop; armor's loop adds 1000 to an
				// int64. The limiter takes the same path either way.
				t := drainedAt
				wrong := 0
				for i := 0; i < n; i++ {
					if !grantTimeGiven.AllowN(t, 1) {
						wrong++
					}
				}
				return wrong
			},
			once: func() { grantTimeGiven.AllowN(drainedAt, 1) },
		},
		{
			name: "go_granted_clock_read",
			what: "lim.Allow() (reads time.Now()), always granted",
			loop: func(n int) int {
				wrong := 0
				for i := 0; i < n; i++ {
					if !grantClock.Allow() {
						wrong++
					}
				}
				return wrong
			},
			once: func() { grantClock.Allow() },
		},
		{
			name: "go_denied_time_given",
			what: "lim.AllowN(t, 1) on a drained limiter, fixed t, always denied",
			loop: func(n int) int {
				t := drainedAt
				wrong := 0
				for i := 0; i < n; i++ {
					if drained.AllowN(t, 1) {
						wrong++
					}
				}
				return wrong
			},
			once: func() { drained.AllowN(drainedAt, 1) },
		},
		{
			name: "go_denied_clock_read",
			what: "lim.Allow() on a drained limiter, always denied",
			loop: func(n int) int {
				wrong := 0
				for i := 0; i < n; i++ {
					if drained.Allow() {
						wrong++
					}
				}
				return wrong
			},
			once: func() { drained.Allow() },
		},
		{
			name: "go_clock_read",
			what: "time.Now(): wall and monotonic clocks, two vDSO reads (what Allow reads)",
			loop: func(n int) int {
				var last time.Time
				for i := 0; i < n; i++ {
					last = time.Now()
				}
				atomic.AddInt64(&timeSink, last.UnixNano())
				return 0
			},
		},
		{
			name: "go_mono_clock_read",
			what: "time.Since(start): the monotonic clock alone, one vDSO read (like steady_clock::now)",
			loop: func(n int) int {
				var sum time.Duration
				for i := 0; i < n; i++ {
					sum += time.Since(start)
				}
				atomic.AddInt64(&monoSink, int64(sum))
				return 0
			},
		},
		{
			name: "go_floor_cas",
			what: "one compare-and-swap loop on a shared int64 (the floor when the time is given)",
			loop: func(n int) int {
				for i := 0; i < n; i++ {
					for {
						cur := atomic.LoadInt64(&casWord.v)
						if atomic.CompareAndSwapInt64(&casWord.v, cur, cur+1) {
							break
						}
					}
				}
				return 0
			},
		},
	}
}

// threadCPU returns the calling thread's CPU time. The caller must be locked
// to its OS thread.
func threadCPU() time.Duration {
	const clockThreadCPUTimeID = 3 // CLOCK_THREAD_CPUTIME_ID, <linux/time.h>
	var ts syscall.Timespec
	_, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0)
	if errno != 0 {
		panic(fmt.Sprintf("clock_gettime(CLOCK_THREAD_CPUTIME_ID): %v", errno))
	}
	return time.Duration(ts.Nano())
}

type runResult struct {
	cpu, real time.Duration // summed over goroutines
	wrong     int
}

// runOnce runs loop(n) on `threads` goroutines at once, each locked to an OS
// thread.
func runOnce(loop loopFunc, threads, n int) runResult {
	var (
		ready, done sync.WaitGroup
		mu          sync.Mutex
		total       runResult
	)
	startLine := make(chan struct{})
	ready.Add(threads)
	done.Add(threads)
	for g := 0; g < threads; g++ {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			defer done.Done()
			ready.Done()
			<-startLine
			cpu0, wall0 := threadCPU(), time.Now()
			wrong := loop(n)
			wall, cpu := time.Since(wall0), threadCPU()-cpu0
			mu.Lock()
			total.cpu += cpu
			total.real += wall
			total.wrong += wrong
			mu.Unlock()
		}()
	}
	ready.Wait()
	close(startLine)
	done.Wait()
	return total
}

type result struct {
	Name        string  `json:"name"`
	Threads     int     `json:"threads"`
	Iterations  int64   `json:"iterations"`
	CPUNs       float64 `json:"cpu_ns"`
	RealNs      float64 `json:"real_ns"`
	AllocsPerOp float64 `json:"allocs_per_op"`
	Wrong       int     `json:"wrong"`
	What        string  `json:"what"`
}

// measure grows the per-goroutine iteration count until one run's average
// wall time reaches minTime, then reports that run.
func measure(c benchCase, threads int, minTime time.Duration) result {
	n := 100
	for {
		r := runOnce(c.loop, threads, n)
		elapsed := r.real / time.Duration(threads)
		const maxIterations = 1_000_000_000
		if elapsed >= minTime || n >= maxIterations || r.wrong != 0 {
			ops := int64(n) * int64(threads)
			return result{
				Name:       c.name,
				Threads:    threads,
				Iterations: ops,
				CPUNs:      float64(r.cpu.Nanoseconds()) / float64(ops),
				RealNs:     float64(r.real.Nanoseconds()) / float64(threads) / float64(ops),
				Wrong:      r.wrong,
				What:       c.what,
			}
		}
		// Aim 40 % past minTime, as Google Benchmark does; at least double,
		// at most a hundredfold per step.
		grow := 100.0
		if elapsed > 0 {
			grow = 1.4 * float64(minTime) / float64(elapsed)
		}
		if grow < 2 {
			grow = 2
		} else if grow > 100 {
			grow = 100
		}
		next := float64(n) * grow
		if next > maxIterations {
			next = maxIterations
		}
		n = int(next)
	}
}

func xTimeVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path == "golang.org/x/time" {
			if d.Replace != nil {
				return d.Version + " => " + d.Replace.Path
			}
			return d.Version
		}
	}
	return "unknown"
}

func main() {
	minTime := flag.Float64("min-time", 0.5, "seconds each case must run at least (per thread count)")
	threadList := flag.String("threads", "1,2", "comma-separated goroutine counts")
	filter := flag.String("filter", "", "run only the cases whose name contains this")
	procs := flag.Int("gomaxprocs", 2, "GOMAXPROCS (0: leave as the runtime set it)")
	flag.Parse()
	if *minTime <= 0 {
		fmt.Fprintln(os.Stderr, "peers: -min-time must be positive")
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var threads []int
	for _, s := range strings.Split(*threadList, ",") {
		t, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || t < 1 {
			fmt.Fprintf(os.Stderr, "peers: bad -threads entry %q\n", s)
			os.Exit(2)
		}
		threads = append(threads, t)
	}

	out := json.NewEncoder(os.Stdout)
	_ = out.Encode(map[string]any{
		"context":    "golang.org/x/time/rate",
		"go_version": runtime.Version(),
		"x_time":     xTimeVersion(),
		"gomaxprocs": runtime.GOMAXPROCS(0),
		"num_cpu":    runtime.NumCPU(),
		"min_time_s": *minTime,
	})

	d := time.Duration(*minTime * float64(time.Second))
	failed := false
	for _, c := range cases() {
		if *filter != "" && !strings.Contains(c.name, *filter) {
			continue
		}
		allocs := 0.0
		if c.once != nil {
			allocs = testing.AllocsPerRun(1000, c.once)
		}
		for _, t := range threads {
			r := measure(c, t, d)
			r.AllocsPerOp = allocs
			_ = out.Encode(r)
			if r.Wrong != 0 {
				fmt.Fprintf(os.Stderr, "peers: %s on %d goroutines: %d calls went the wrong way\n", c.name, t, r.Wrong)
				failed = true
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
