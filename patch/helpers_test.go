package patch

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A test tree: path -> content. A path ending in "*" is an executable
// file (the "*" is not part of the name).
type files map[string]string

func writeTree(t testing.TB, dir string, fs files) {
	t.Helper()
	for name, data := range fs {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "*") {
			name, mode = strings.TrimSuffix(name, "*"), 0o755
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads a tree back in the same form (symlinks as "-> target").
func readTree(t testing.TB, dir string) files {
	t.Helper()
	out := files{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "-> " + target
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o111 != 0 {
			rel += "*"
		}
		out[rel] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listDirs lists the directories under dir (relative), for checking that
// nothing is left behind.
func listDirs(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func assertTree(t testing.TB, dir string, want files) {
	t.Helper()
	got := readTree(t, dir)
	if reflect.DeepEqual(got, want) {
		return
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("missing %s", k)
		} else if g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected %s (%q)", k, got[k])
		}
	}
}

func copyFiles(f files) files {
	out := files{}
	for k, v := range f {
		out[k] = v
	}
	return out
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func applyString(t testing.TB, dir, name, diff string, opts ...Option) *Report {
	t.Helper()
	r, err := ApplyDiff(context.Background(), dir, name, []byte(diff), opts...)
	if err != nil {
		t.Fatalf("ApplyDiff: internal error: %v", err)
	}
	return r
}

// The tree the fixtures in testdata (git.diff, format.patch, ruN.diff,
// u.diff, series.mbox) were made from.
var fixtureBefore = files{
	"Gemfile": `source "https://rubygems.org"

gem "rails", "~> 6.1"
gem "hiredis", "~> 0.6"
gem "redis", "~> 4.5", require: ["redis", "redis/connection/hiredis"]
gem "puma"
`,
	"lib/numbers.txt":    numbers(1, 20, nil),
	"lib/old.rb":         "old content\nkeep\n",
	"lib/moveme.rb":      "to be renamed\n1\n2\n3\n4\n5\n6\n7\n8\n9\n",
	"run.sh":             "plain\n",
	"app/lib/nonl.txt":   "no newline at end",
	"app/with space.txt": "spacey\n",
	"app/tést.txt":       "unicode\n",
}

// fixtureAfter is the tree after git.diff.
var fixtureAfter = files{
	"Gemfile": `source "https://rubygems.org"

gem "rails", "~> 6.1"
gem "puma"
`,
	"lib/numbers.txt":    numbers(1, 20, map[int]string{5: "line five", 17: "line seventeen"}),
	"lib/moved.rb":       "to be renamed\n1\n2\n3\n4\nfive\n6\n7\n8\n9\n",
	"lib/new.rb":         "brand new\n",
	"lib/empty.rb":       "",
	"run.sh*":            "plain\n",
	"app/lib/nonl.txt":   "no newline at end\n",
	"app/with space.txt": "spacey\nmore\n",
	"app/tést.txt":       "unicode\nmore\n",
}

// numbers returns "line a\n" ... "line b\n" with some lines replaced.
func numbers(a, b int, repl map[int]string) string {
	var sb strings.Builder
	for i := a; i <= b; i++ {
		if r, ok := repl[i]; ok {
			sb.WriteString(r + "\n")
			continue
		}
		sb.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	return sb.String()
}
