package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ticksToMicros converts clock ticks of /proc/<pid>/stat (USER_HZ, 100 on
// Linux) to microseconds.
const ticksToMicros = 1e6 / 100

// procStat is what the run reads of one process's /proc/<pid>/stat.
type procStat struct {
	comm  string
	ppid  int
	ticks float64 // user + system CPU of the process and of its waited-for children
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 15 {
		return procStat{}, false
	}
	ps := procStat{comm: s[open+1 : end]}
	ps.ppid, _ = strconv.Atoi(f[1])
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		ps.ticks += v
	}
	return ps, true
}

// cpuTicks is the CPU a process has used so far (0 when it is gone).
func cpuTicks(pid int) float64 {
	ps, _ := readStat(pid)
	return ps.ticks
}

// postgresTicks is the CPU used so far by the run's PostgreSQL cluster:
// the postgres process this program started and all its descendants.
func postgresTicks() float64 {
	entries, _ := filepath.Glob("/proc/[0-9]*/stat")
	stats := make(map[int]procStat, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(e)))
		if err != nil {
			continue
		}
		if ps, ok := readStat(pid); ok {
			stats[pid] = ps
		}
	}
	self := os.Getpid()
	inCluster := func(pid int) bool {
		for hops := 0; hops < 8 && pid > 1; hops++ {
			ps, ok := stats[pid]
			if !ok {
				return false
			}
			if ps.comm == "postgres" && ps.ppid == self {
				return true
			}
			pid = ps.ppid
		}
		return false
	}
	var total float64
	for pid, ps := range stats {
		if inCluster(pid) {
			total += ps.ticks
		}
	}
	return total
}

// fsyncLatency is the measured cost of a durable write.
type fsyncLatency struct {
	n        int
	p50, p99 time.Duration
}

// measureFsync appends 8 KiB (a WAL page) to a file in dir and fdatasyncs
// it, n times, as PostgreSQL's WAL flush does (wal_sync_method fdatasync,
// the Linux default), and reports the latency of each write + sync.
func measureFsync(dir string, n int) (fsyncLatency, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return fsyncLatency{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	page := make([]byte, 8192)
	lat := make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if _, err := f.Write(page); err != nil {
			return fsyncLatency{}, err
		}
		if err := fdatasync(f); err != nil {
			return fsyncLatency{}, err
		}
		lat[i] = time.Since(t0)
	}
	slices.Sort(lat)
	return fsyncLatency{n: n, p50: lat[n/2].Round(time.Microsecond), p99: lat[n*99/100].Round(time.Microsecond)}, nil
}
