package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// The WAL-like probe must overwrite a preallocated file in place, page after
// page, wrapping at its end — never grow it, which would make every
// fdatasync also commit a size change to the file system's journal (a cost
// no WAL flush pays, and what the probe used to measure).
func TestWALFileOverwritesInPlaceAndWraps(t *testing.T) {
	t.Parallel()
	const pages = 4
	w, err := newWALFile(t.TempDir(), pages*walPageBytes)
	require.NoError(t, err)
	defer w.close()
	fi, err := w.f.Stat()
	require.NoError(t, err)
	require.EqualValues(t, pages*walPageBytes, fi.Size())

	for i := range pages + 2 {
		page := bytes.Repeat([]byte{byte('a' + i)}, walPageBytes)
		require.NoError(t, w.flush(page))
		fi, err := w.f.Stat()
		require.NoError(t, err)
		require.EqualValues(t, pages*walPageBytes, fi.Size(), "flush %d changed the file's size", i)
	}
	got, err := os.ReadFile(w.f.Name())
	require.NoError(t, err)
	// Pages 0 and 1 were written twice (flushes 4 and 5 wrapped), 2 and 3 once.
	for i, want := range []byte{'e', 'f', 'c', 'd'} {
		require.Equal(t, bytes.Repeat([]byte{want}, walPageBytes), got[i*walPageBytes:(i+1)*walPageBytes], "page %d", i)
	}
}

func TestMeasureFsyncReportsBothKinds(t *testing.T) {
	t.Parallel()
	p, err := measureFsync(t.TempDir(), 20)
	require.NoError(t, err)
	require.Equal(t, 20, p.wal.n)
	require.Equal(t, 20, p.appended.n)
	require.Positive(t, p.wal.p50)
	require.Positive(t, p.appended.p50)
}
