package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmbuild/vmbuild/internal/localsvc"
)

// Service is a server a test started on a loopback port.
type Service struct {
	Name string
	Addr string // 127.0.0.1:PORT
	Port int
	Log  string
}

// need finds a program of a Debian package the tests install
// (hack/install-deps.sh), or fails naming the service and the package.
func need(t testing.TB, service, pkg string, candidates ...string) string {
	t.Helper()
	for _, c := range candidates {
		if strings.Contains(c, "*") {
			ms, _ := filepath.Glob(c)
			sort.Strings(ms)
			if len(ms) > 0 {
				return ms[len(ms)-1]
			}
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	skipOrFail(t, "testenv: %s is not installed: no %s (apt-get install %s; hack/install-deps.sh installs it)", service, strings.Join(candidates, " or "), pkg)
	return ""
}

// waitTCP waits until addr accepts connections, or fails naming the
// service with the end of its log.
func waitTCP(t testing.TB, s *Service, cmd *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
			c.Close()
			return
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: %s did not come up on %s; last lines of %s:\n%s", s.Name, s.Addr, s.Log, localsvc.Tail(s.Log, 20))
}

func startProc(t testing.TB, s *Service, cmd *exec.Cmd) {
	t.Helper()
	logf, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting %s: %v", s.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		logf.Close()
	})
}

// StartRedis starts Debian's redis-server on a free loopback port, with no
// persistence.
func StartRedis(t testing.TB) *Service {
	t.Helper()
	bin := need(t, "Redis", "redis-server", "redis-server")
	port, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &Service{Name: "Redis", Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), Log: filepath.Join(t.TempDir(), "redis.log")}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", t.TempDir())
	startProc(t, s, cmd)
	waitTCP(t, s, cmd)
	return s
}

// Postgres is a PostgreSQL server with trust authentication for user
// postgres on loopback.
type Postgres struct {
	Service
	psql string
}

// StartPostgres initialises a cluster in a temporary directory (as the
// postgres user: initdb refuses root) and starts Debian's PostgreSQL on a
// free loopback port.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	initdb := need(t, "PostgreSQL", "postgresql", "/usr/lib/postgresql/*/bin/initdb")
	server := filepath.Join(filepath.Dir(initdb), "postgres")
	psql := need(t, "PostgreSQL's client", "postgresql-client", "psql")
	u, err := user.Lookup("postgres")
	if err != nil {
		skipOrFail(t, "testenv: PostgreSQL: no postgres user (apt-get install postgresql): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	dir, err := os.MkdirTemp("", "vmbuild-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	// The postgres user must reach its directory: every parent needs
	// search permission for it (a 0700 TMPDIR owned by root has none).
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err == nil {
			sys, _ := st.Sys().(*syscall.Stat_t)
			if st.Mode().Perm()&0o001 == 0 && (sys == nil || (int(sys.Uid) != uid && (int(sys.Gid) != gid || st.Mode().Perm()&0o010 == 0))) {
				t.Fatalf("testenv: PostgreSQL: the postgres user cannot reach %s: %s is mode %s (set TMPDIR to a directory others can traverse)", dir, p, st.Mode().Perm())
			}
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	data := filepath.Join(dir, "data")
	initCmd := exec.Command(initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
	initCmd.SysProcAttr = cred
	initCmd.Dir = dir
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: PostgreSQL initdb: %v\n%s", err, out)
	}
	port, err := localsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := &Postgres{Service: Service{Name: "PostgreSQL", Port: port, Addr: fmt.Sprintf("127.0.0.1:%d", port), Log: filepath.Join(dir, "postgres.log")}, psql: psql}
	cmd := exec.Command(server, "-D", data, "-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred.Credential}
	cmd.Dir = dir
	startProc(t, &p.Service, cmd)
	waitTCP(t, &p.Service, cmd)
	return p
}

// SQL runs statements in database db with psql, stopping at the first
// error.
func (p *Postgres) SQL(t testing.TB, db, sql string) string {
	t.Helper()
	cmd := exec.Command(p.psql, "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: psql on %s: %v\n%s\n(SQL: %s)", db, err, out, sql)
	}
	return strings.TrimSpace(string(out))
}
