package devtest

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// Proxy is a TCP proxy between a test and its PostgreSQL database that the
// test can cut and restore, to see what the code under test does when the
// database goes away mid-flight and comes back.
type Proxy struct {
	t       testing.TB
	addr    string // where the proxy listens, fixed for its lifetime
	network string // how it reaches PostgreSQL: "tcp" or "unix"
	target  string

	direct      string        // the database URL without the proxy
	dropReplies atomic.Bool   // swallow what PostgreSQL sends (DropReplies)
	reportPID   atomic.Uint32 // the process id new connections are told (ReportBackendPID)

	mu    sync.Mutex
	ln    net.Listener // nil while cut
	conns map[net.Conn]struct{}
}

// DirectURL is the database's URL without the proxy, for a test's own
// look at the database while the proxy is cut.
func (p *Proxy) DirectURL() string { return p.direct }

// DropReplies makes the proxy swallow everything PostgreSQL sends from now
// on while it still forwards what the client sends: a statement runs and
// commits, but its answer never arrives — a connection that breaks after the
// commit. Restore ends it.
func (p *Proxy) DropReplies() { p.dropReplies.Store(true) }

// ReportBackendPID makes the proxy tell connections opened from now on that
// their server process is pid (in the BackendKeyData message), instead of the
// process that really serves them — what a pooler (PgBouncer, RDS Proxy) does:
// the id a client sees is not the process that runs its statements.
func (p *Proxy) ReportBackendPID(pid uint32) { p.reportPID.Store(pid) }

// ProxiedDatabase creates a fresh migrated database (as Database) and returns
// a URL that reaches it only through the returned Proxy.
func ProxiedDatabase(t testing.TB) (string, *Proxy) {
	t.Helper()
	raw := Database(t)
	cfg, err := pgconn.ParseConfig(raw)
	if err != nil {
		t.Fatalf("devtest: parse database URL: %v", err)
	}
	p := &Proxy{t: t, direct: raw, network: "tcp", target: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), conns: map[net.Conn]struct{}{}}
	if filepath.IsAbs(cfg.Host) {
		p.network, p.target = "unix", filepath.Join(cfg.Host, ".s.PGSQL."+strconv.Itoa(int(cfg.Port)))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("devtest: proxy listen: %v", err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Cut)

	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("devtest: parse database URL: %v", err)
	}
	q := u.Query()
	q.Del("host") // a unix-socket URL names its directory here
	q.Del("port")
	u.RawQuery = q.Encode()
	u.Host = p.addr
	return u.String(), p
}

// Cut closes the listener and every proxied connection: new connections are
// refused and open ones are reset, as when the database host goes down.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Restore listens again on the same address.
func (p *Proxy) Restore() {
	p.t.Helper()
	p.dropReplies.Store(false)
	p.mu.Lock()
	up := p.ln != nil
	p.mu.Unlock()
	if up {
		return
	}
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("devtest: proxy listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by Cut
			}
			go p.pipe(c)
		}
	}()
}

// pipe copies between the client connection and a new one to PostgreSQL
// until either side closes or Cut closes both.
func (p *Proxy) pipe(client net.Conn) {
	server, err := net.Dial(p.network, p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // cut while dialling
		p.mu.Unlock()
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.conns[client], p.conns[server] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	reportPID := p.reportPID.Load()
	cp := func(dst, src net.Conn, drop *atomic.Bool) {
		var in io.Reader = src
		if drop != nil && reportPID != 0 {
			in = rewriteBackendPID(src, dst, reportPID)
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 && (drop == nil || !drop.Load()) {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Either side ending ends the pair, so the other copy returns too.
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go cp(server, client, nil)
	go cp(client, server, &p.dropReplies)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// rewriteBackendPID forwards the server's messages to dst until the
// BackendKeyData message, whose process id it replaces with pid, and returns
// a reader for the rest of the stream. (The proxy's URLs use
// sslmode=disable, so the stream is framed messages from its first byte.) On
// a read or write error it returns a reader that reports it.
func rewriteBackendPID(src io.Reader, dst io.Writer, pid uint32) io.Reader {
	br := bufio.NewReader(src)
	for {
		var head [5]byte // type, then the length including itself
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return errReader{err}
		}
		n := int(binary.BigEndian.Uint32(head[1:]))
		if n < 4 {
			return errReader{io.ErrUnexpectedEOF}
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(br, body); err != nil {
			return errReader{err}
		}
		key := head[0] == 'K' && len(body) == 8
		if key {
			binary.BigEndian.PutUint32(body, pid)
		}
		if _, err := dst.Write(append(head[:], body...)); err != nil {
			return errReader{err}
		}
		if key {
			return br
		}
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }
