package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat; it
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTimes is CPU time used so far: by this process (load generator, API,
// worker and the embedded Temporal server) and by its descendants
// (PostgreSQL: the postmaster, its live backends, and the backends it
// already reaped).
type cpuTimes struct {
	self, children time.Duration
	ok             bool
}

// readCPU reads cpuTimes from /proc; ok is false where there is no /proc.
// CPU time per approval, unlike throughput, barely moves with what else the
// machine is running, so it is what to compare between builds on a shared
// machine.
func readCPU() cpuTimes {
	stats, err := procStats()
	if err != nil {
		return cpuTimes{}
	}
	self := os.Getpid()
	me, ok := stats[self]
	if !ok {
		return cpuTimes{}
	}
	children := map[int][]int{}
	for pid, s := range stats {
		children[s.ppid] = append(children[s.ppid], pid)
	}
	var kids time.Duration
	queue := append([]int(nil), children[self]...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		s := stats[pid]
		// A child's own time plus that of the children it has reaped.
		kids += s.utime + s.stime + s.cutime + s.cstime
		queue = append(queue, children[pid]...)
	}
	return cpuTimes{self: me.utime + me.stime, children: kids, ok: true}
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime time.Duration
}

// procStats reads /proc/<pid>/stat of every process still there.
func procStats() (map[int]procStat, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]procStat, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The command name (field 2) is in parentheses and may hold spaces.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		// After the name: state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17).
		if len(f) < 15 {
			continue
		}
		num := func(k int) int64 { n, _ := strconv.ParseInt(f[k-3], 10, 64); return n }
		tick := func(k int) time.Duration { return time.Duration(num(k)) * time.Second / clockTicks }
		out[pid] = procStat{ppid: int(num(4)), utime: tick(14), stime: tick(15), cutime: tick(16), cstime: tick(17)}
	}
	return out, nil
}

// idleSample is how long the stack's CPU use is sampled with no approvals
// running.
const idleSample = 5 * time.Second

// measureIdleCPU is the CPU the stack uses with nothing to do (pollers,
// queue processors, timers), in cores.
func measureIdleCPU(d time.Duration) float64 {
	before := readCPU()
	time.Sleep(d)
	after := readCPU()
	if !before.ok || !after.ok {
		return 0
	}
	return (after.self - before.self + after.children - before.children).Seconds() / d.Seconds()
}

// printCPUPerApproval prints the CPU time used between before and after,
// per approval, and the same less what the stack uses idle (idle cores over
// the phase's wall time), which is what a slower phase would otherwise add.
func printCPUPerApproval(before, after cpuTimes, idle float64, approvals int64, wall time.Duration) {
	if !before.ok || !after.ok || approvals <= 0 {
		fmt.Println("CPU per approval: unknown (no /proc)")
		return
	}
	self, pg := after.self-before.self, after.children-before.children
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(approvals) }
	idleMS := idle * wall.Seconds() * 1000 / float64(approvals)
	fmt.Printf("\nCPU in the throughput phase (%s wall): stack process %.1f s, PostgreSQL %.1f s = %.2f cores (idle stack: %.3f cores)\n",
		wall.Round(time.Millisecond), self.Seconds(), pg.Seconds(), (self+pg).Seconds()/wall.Seconds(), idle)
	fmt.Printf("CPU per approval: %.1f ms (stack process %.1f ms, PostgreSQL %.1f ms) over %d approvals; %.1f ms less the idle stack's\n",
		ms(self+pg), ms(self), ms(pg), approvals, ms(self+pg)-idleMS)
}
