package harness

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the benchmark ran.
type Machine struct {
	CPU      string            `json:"cpu"`
	Cores    int               `json:"cores"`
	MemoryGB float64           `json:"memoryGB"`
	Kernel   string            `json:"kernel"`
	OS       string            `json:"os"`
	Go       string            `json:"go"`
	Versions map[string]string `json:"versions"`
	// Checkout is the vmbuild commit (with "+dirty" for local changes).
	Checkout string `json:"checkout"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and end: the
	// machine may be shared.
	LoadBefore string `json:"loadBefore"`
	LoadAfter  string `json:"loadAfter"`
	// CPUPressure is the share of the run's wall time during which some
	// runnable task on the machine waited for a CPU (/proc/pressure/cpu
	// "some"): high values mean other work competed with the benchmark.
	CPUPressure float64 `json:"cpuPressure"`
	// BusyCPU is the share of all CPU time that was busy (any process on
	// the machine) during the run, from /proc/stat.
	BusyCPU float64 `json:"busyCPU"`
	// BackgroundBusyCPU is the busy share measured for 2 s before the
	// first build, with the benchmark idle: other work on the machine.
	BackgroundBusyCPU float64 `json:"backgroundBusyCPU"`

	pressure0 int64
	stat0     [2]int64
	start     time.Time
}

// cpuPressureTotal reads /proc/pressure/cpu's "some total" (µs).
func cpuPressureTotal() int64 {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "some ") {
			continue
		}
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// cpuTimes returns busy and total jiffies from /proc/stat's cpu line.
func cpuTimes() [2]int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return [2]int64{-1, -1}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy, total int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return [2]int64{busy, total}
}

// startSampling records the counters at the start of the run, after
// measuring for two seconds how busy the machine is without the benchmark.
func (m *Machine) startSampling() {
	s0 := cpuTimes()
	time.Sleep(2 * time.Second)
	if s1 := cpuTimes(); s1[1] > s0[1] && s0[1] >= 0 {
		m.BackgroundBusyCPU = float64(s1[0]-s0[0]) / float64(s1[1]-s0[1])
	}
	m.pressure0 = cpuPressureTotal()
	m.stat0 = cpuTimes()
	m.start = time.Now()
	m.LoadBefore = loadavg()
}

// stopSampling computes the run's CPU pressure and busy share.
func (m *Machine) stopSampling() {
	m.LoadAfter = loadavg()
	if m.start.IsZero() {
		return
	}
	wall := time.Since(m.start)
	if p := cpuPressureTotal(); p >= 0 && m.pressure0 >= 0 && wall > 0 {
		m.CPUPressure = float64(p-m.pressure0) / float64(wall.Microseconds())
	}
	if s := cpuTimes(); s[1] > m.stat0[1] && m.stat0[1] >= 0 {
		m.BusyCPU = float64(s[0]-m.stat0[0]) / float64(s[1]-m.stat0[1])
	}
}

func describeMachine(ctx context.Context, root string, bins map[string]string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Versions: map[string]string{}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				var kb float64
				for _, f := range strings.Fields(v) {
					if n, err := parseFloat(f); err == nil {
						kb = n
						break
					}
				}
				m.MemoryGB = kb / 1024 / 1024
			}
		}
	}
	version := func(name string, args ...string) {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
		if err != nil {
			return
		}
		m.Versions[name] = firstVersionLine(string(out))
	}
	version("buildkitd", bins["buildkitd"], "--version")
	version("buildctl", bins["buildctl"], "--version")
	version("registry", bins["registry"], "--version")
	version("vmbuild", bins["vmbuild"], "version")
	version("cosign", bins["cosign"], "version")
	version("git", "git", "--version")
	version("runc", "runc", "--version")
	version("busybox", "/bin/busybox", "--help")
	// The pins the tools were built from (a binary built without the
	// Makefile's version stamp reports v0.0.0+unknown).
	for _, p := range []struct{ name, gomod, module string }{
		{"buildkit (pinned)", "tools/go.mod", "github.com/moby/buildkit"},
		{"distribution registry (pinned)", "tools/go.mod", "github.com/distribution/distribution/v3"},
		{"cosign (pinned)", "tools/cosign2/go.mod", "github.com/sigstore/cosign/v2"},
	} {
		if v := pinnedVersion(filepath.Join(root, p.gomod), p.module); v != "" {
			m.Versions[p.name] = v + " (" + p.gomod + ")"
		}
	}
	if st, err := os.Stat(bins["vmbuild"]); err == nil {
		m.Versions["vmbuild"] += " (bin/vmbuild built " + st.ModTime().UTC().Format("2006-01-02 15:04 UTC") + ")"
	}
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.Checkout = strings.TrimSpace(string(out))
		if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
			m.Checkout += "+dirty"
		}
	}
	return m
}

// pinnedVersion reads module's version from a go.mod file.
func pinnedVersion(gomod, module string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "require "))
		if len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	return ""
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return strings.TrimSpace(string(b))
}

// firstVersionLine picks the line of a --version output that names the
// version (cosign prints a banner first).
func firstVersionLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "GitVersion:"); ok {
			return strings.TrimSpace(v)
		}
	}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l != "" && (strings.Contains(l, "version") || strings.Contains(l, "Version") || strings.Contains(l, " v")) {
			return l
		}
	}
	if len(lines) > 0 {
		return strings.TrimSpace(lines[0])
	}
	return ""
}
