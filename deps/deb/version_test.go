package deb

import (
	"os/exec"
	"testing"
)

// Examples from Debian Policy §5.6.12 and dpkg's own test suite
// (lib/dpkg/t/t-version.c).
var versionCases = []struct {
	a, b string
	want int
}{
	{"1.0", "1.0", 0},
	{"1.0~rc1", "1.0", -1},
	{"1.0~rc1~beta", "1.0~rc1", -1},
	{"1.0~", "1.0", -1},
	{"1.0", "1.0+b1", -1},
	{"1.0-1", "1.0-1+b1", -1},
	{"1.0-1", "1.0-2", -1},
	{"1.0-10", "1.0-9", 1},
	{"1.0", "1.0-0", 0}, // a missing revision is an empty one, like "0"
	{"1:1.0", "2.0", 1},
	{"0:1.0", "1.0", 0},
	{"1:1.0", "1:1.0", 0},
	{"2:0.1", "1:9.9", 1},
	{"1.2.3", "1.2.10", -1},
	{"1.002", "1.2", 0},
	{"1.0a", "1.0", 1},
	{"1.0a", "1.0+", -1}, // letters sort before non-letters
	{"1.0+", "1.0.", -1}, // then by ASCII: '+' < '.'
	{"1.0~~", "1.0~~a", -1},
	{"1.0~~a", "1.0~", -1},
	{"1.0~", "1.0", -1},
	{"2.41-12", "2.41-12+deb13u1", -1},
	{"24.22.2+dfsg+~cs24.19.2-1", "24.22.2+dfsg-1", 1},
	{"1:1.3.dfsg+really1.3.2-4", "1:1.3.dfsg-3", 1},
	{"9.3.0+really9.1.2-1", "9.3.0", 1},
	{"7.6p2-4", "7.6-0", 1},
	{"1.0.3-3", "1.0-1", 1},
	{"1.3", "1.2.2-2", 1},
	{"1.3", "1.2.2", 1},
	{"0-pre", "0-pre", 0},
	{"0-pre", "0-pree", -1},
	{"1.1.6r2-2", "1.1.6r-1", 1},
	{"2.6b2-1", "2.6b-2", 1},
	{"98.1p5-1", "98.1-pre2-b6-2", -1},
	{"0.4a6-2", "0.4-1", 1},
	{"1:3.0.5-2", "1:3.0.5.1", -1},
	{"10.11.1.3-2", "10.11.1.3-2", 0},
	{"4.4.3-2", "4.4.3-2", 0},
	{"1:2ab:5", "1:2ab:5", 0},
	{"7:1-a:b-5", "7:1-a:b-5", 0},
	{"57:1.2.3abYZ+~-4-5", "57:1.2.3abYZ+~-4-5", 0},
	{"1.2.3", "1.2.3", 0},
	{"4.4.3-2", "2:4.4.3-2", -1},
	{"1.2ab+~-4", "1.2ab+~-4", 0},
}

func TestCompareVersions(t *testing.T) {
	for _, c := range versionCases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := CompareVersions(c.b, c.a); got != -c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.b, c.a, got, -c.want)
		}
	}
}

// TestCompareVersionsWithDpkg checks the table against dpkg itself, where
// it is installed: the table must be right, not just agree with us.
func TestCompareVersionsWithDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg to compare with")
	}
	for _, c := range versionCases {
		op := map[int]string{-1: "lt", 0: "eq", 1: "gt"}[c.want]
		if err := exec.Command("dpkg", "--compare-versions", c.a, op, c.b).Run(); err != nil {
			t.Errorf("dpkg does not agree that %s %s %s", c.a, op, c.b)
		}
	}
}

func TestParseVersion(t *testing.T) {
	v, err := ParseVersion("1:1.3.dfsg+really1.3.2-4")
	if err != nil || v.Epoch != 1 || v.Upstream != "1.3.dfsg+really1.3.2" || v.Revision != "4" {
		t.Fatalf("ParseVersion: %+v, %v", v, err)
	}
	if v.String() != "1:1.3.dfsg+really1.3.2-4" {
		t.Errorf("String() = %q", v.String())
	}
	for _, bad := range []string{"", "a:1.0", "1.0-", "1 0", "1.0_1", "-1:1.0"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) accepted", bad)
		}
	}
}

func TestParseRelations(t *testing.T) {
	rels, err := ParseRelations("libc6 (>= 2.38), python3:any, default-mta | mail-transport-agent, libfoo (<< 2~) [amd64 !i386] <!nocheck>, bar (> 1), baz (< 2)")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"libc6 (>= 2.38)", "python3:any", "default-mta | mail-transport-agent", "libfoo (<< 2~)", "bar (>= 1)", "baz (<= 2)"}
	if len(rels) != len(want) {
		t.Fatalf("got %d relations: %v", len(rels), rels)
	}
	for i, r := range rels {
		if r.String() != want[i] {
			t.Errorf("relation %d = %q, want %q", i, r, want[i])
		}
	}
	if a := rels[3][0].Archs; len(a) != 2 || a[1] != "!i386" {
		t.Errorf("arch restriction = %v", a)
	}
	for _, bad := range []string{"foo (>= )", "foo (~ 1)", "(>= 1)", "foo (>= 1"} {
		if _, err := ParseRelations(bad); err == nil {
			t.Errorf("ParseRelations(%q) accepted", bad)
		}
	}
}

func TestDebFilename(t *testing.T) {
	if got := DebFilename("zlib1g", "1:1.3.dfsg+really1.3.2-4", "amd64"); got != "zlib1g_1%3a1.3.dfsg+really1.3.2-4_amd64.deb" {
		t.Errorf("DebFilename = %q", got)
	}
}
