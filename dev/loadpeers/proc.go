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

func latencyOf(lat []time.Duration) fsyncLatency {
	slices.Sort(lat)
	n := len(lat)
	return fsyncLatency{n: n, p50: lat[n/2].Round(time.Microsecond), p99: lat[n*99/100].Round(time.Microsecond)}
}

// walSegmentBytes and walPageBytes are a PostgreSQL WAL segment's size (the
// default wal_segment_size) and one WAL page (XLOG_BLCKSZ).
const (
	walSegmentBytes = 16 << 20
	walPageBytes    = 8192
)

// fsyncProbe is the disk's cost of a durable write, measured two ways in
// alternation: as PostgreSQL's WAL flush makes it, and as an append.
type fsyncProbe struct {
	// wal: an 8 KiB page overwritten in place, in sequence (wrapping), in a
	// 16 MiB file zero-filled and fsynced beforehand, then fdatasync — what a
	// commit's WAL flush does (wal_sync_method fdatasync, the Linux default):
	// PostgreSQL zero-fills each segment before use (wal_init_zero) and
	// recycles old ones, so a flush never changes the file's size, and
	// fdatasync writes the data without a journal commit. This is the floor
	// of a durable answer, and the c=1 target's basis.
	wal fsyncLatency
	// appended: the same page appended instead, so each fdatasync also
	// commits the file's new size to the file system's journal (ext4:
	// several times the overwrite's cost). No WAL flush pays that; shown only
	// because earlier runs reported it as the floor.
	appended fsyncLatency
}

// walFile writes as PostgreSQL writes a WAL segment: into a file
// zero-filled and made durable before use, page after page in place,
// wrapping at its end (as a recycled segment is reused).
type walFile struct {
	f    *os.File
	size int64 // bytes, a multiple of walPageBytes
	next int64 // offset of the next page
}

// newWALFile creates a zero-filled file of size bytes in dir and fsyncs it.
// Zeros are written (not a sparse file or fallocate, whose unwritten
// extents the first overwrite would convert: a metadata change), as
// wal_init_zero does.
func newWALFile(dir string, size int64) (*walFile, error) {
	f, err := os.CreateTemp(dir, "fsync-wal-")
	if err != nil {
		return nil, err
	}
	w := &walFile{f: f, size: size}
	zeros := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size; off += int64(len(zeros)) {
		if _, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off); err != nil {
			w.close()
			return nil, err
		}
	}
	if err := f.Sync(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// flush overwrites the next page with page and makes it durable with
// fdatasync: the file's size never changes, so there is no metadata to
// commit.
func (w *walFile) flush(page []byte) error {
	if _, err := w.f.WriteAt(page, w.next); err != nil {
		return err
	}
	w.next = (w.next + int64(len(page))) % w.size
	return fdatasync(w.f)
}

func (w *walFile) close() {
	_ = w.f.Close()
	_ = os.Remove(w.f.Name())
}

// measureFsync runs n writes + fdatasync of each kind, alternating, on
// files in dir (the database's file system).
func measureFsync(dir string, n int) (fsyncProbe, error) {
	seg, err := newWALFile(dir, walSegmentBytes)
	if err != nil {
		return fsyncProbe{}, err
	}
	defer seg.close()
	app, err := os.CreateTemp(dir, "fsync-append-")
	if err != nil {
		return fsyncProbe{}, err
	}
	defer os.Remove(app.Name())
	defer app.Close()
	page := make([]byte, walPageBytes)
	for i := range page {
		page[i] = byte(i*7 + 1) // WAL data, not zeros
	}
	wal, appended := make([]time.Duration, n), make([]time.Duration, n)
	for i := range n {
		t0 := time.Now()
		if err := seg.flush(page); err != nil {
			return fsyncProbe{}, err
		}
		wal[i] = time.Since(t0)
		t0 = time.Now()
		if _, err := app.Write(page); err != nil {
			return fsyncProbe{}, err
		}
		if err := fdatasync(app); err != nil {
			return fsyncProbe{}, err
		}
		appended[i] = time.Since(t0)
	}
	return fsyncProbe{wal: latencyOf(wal), appended: latencyOf(appended)}, nil
}
