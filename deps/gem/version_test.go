package gem

import "testing"

func mustVersion(t *testing.T, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVersionCompare(t *testing.T) {
	// Expectations from Gem::Version#<=> (RubyGems' test_gem_version.rb).
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"1.0", "1", 0},
		{"1.0.0", "1", 0},
		{"1.2", "1.10", -1},
		{"1.0.a", "1.0", -1},
		{"1.0.a", "1.0.b", -1},
		{"1.0.0.beta.1", "1.0.0.beta.2", -1},
		{"1.0.0.rc1", "1.0.0", -1},
		{"1.8.a", "1.8.0.b", 0 - 1},
		{"3.0.0.beta.1", "3.0.0", -1},
		{"0.10.16", "0.10.9", 1},
		{"1.2023.3", "1.2023", 1},
		{"9.2.0", "9.2", 0},
		{"1.0-1", "1.0.pre.1", 0},
		{"12345678901234567890.1", "12345678901234567890.0", 1},
	} {
		got := mustVersion(t, c.a).Compare(mustVersion(t, c.b))
		if got != c.want {
			t.Errorf("%s <=> %s = %d, want %d", c.a, c.b, got, c.want)
		}
		if back := mustVersion(t, c.b).Compare(mustVersion(t, c.a)); back != -c.want {
			t.Errorf("%s <=> %s = %d, want %d", c.b, c.a, back, -c.want)
		}
	}
	for _, bad := range []string{"1..2", "a1", "1.0 beta", "1.0/2"} {
		if _, err := ParseVersion(bad); err == nil {
			t.Errorf("ParseVersion(%q) succeeded", bad)
		}
	}
}

func TestRequirementSatisfied(t *testing.T) {
	for _, c := range []struct {
		req  []string
		v    string
		want bool
	}{
		{nil, "0.0.1", true},
		{[]string{"~> 1.0"}, "1.9.9", true},
		{[]string{"~> 1.0"}, "2.0", false},
		{[]string{"~> 1.0.0"}, "1.0.9", true},
		{[]string{"~> 1.0.0"}, "1.1", false},
		{[]string{"~> 8.1.0"}, "8.1.3.1", true},
		{[]string{"~> 8.1.0"}, "8.2.0", false},
		{[]string{"~> 3.0.0.beta.1"}, "3.0.0", true},
		{[]string{"~> 3.0.0.beta.1"}, "3.0.0.beta.0", false},
		{[]string{"~> 3.0.0.beta.1"}, "3.1", false},
		{[]string{"~> 5"}, "5.4.1", true},
		{[]string{"~> 5"}, "6.0", false},
		{[]string{"> 8"}, "8.0.0", false},
		{[]string{"> 8"}, "8.0.1", true},
		{[]string{"<= 2.6.0"}, "2.6", true},
		{[]string{"1.2"}, "1.2.0", true},
		{[]string{"= 1.2"}, "1.2.1", false},
		{[]string{">= 1.15.7", "!= 1.16.7", "!= 1.16.0"}, "1.16.7", false},
		{[]string{">= 1.15.7", "!= 1.16.7", "!= 1.16.0"}, "1.19.4", true},
		{[]string{">= 3.3.0", "< 4.1.0"}, "4.0.6", true},
		{[]string{"~> 1.0", ">= 1.0.3"}, "1.0.2", false},
		{[]string{"~> 9.9"}, "9.99", true},
		{[]string{"~> 9.9"}, "10.0", false},
		{[]string{"~> 1.99.0"}, "1.99.9", true},
		{[]string{"~> 1.99.0"}, "1.100", false},
		{[]string{"~> 0.0.1"}, "0.0.9", true},
		{[]string{"~> 0.0.1"}, "0.1.0", false},
		{[]string{"= 01.2"}, "1.2", true},
	} {
		r, err := ParseRequirement(c.req...)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Satisfied(mustVersion(t, c.v)); got != c.want {
			t.Errorf("%v satisfied by %s = %v, want %v", c.req, c.v, got, c.want)
		}
	}
}

func TestRequirementEqualAndString(t *testing.T) {
	parse := func(cs ...string) Requirement {
		r, err := ParseRequirement(cs...)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, c := range []struct {
		a, b []string
		want bool
	}{
		{nil, []string{">= 0"}, true},
		{[]string{"~>3.0"}, []string{"~> 3.0"}, true},
		{[]string{">= 1", "< 2"}, []string{"< 2", ">= 1"}, true},
		{[]string{"1.0"}, []string{"= 1"}, true},
		{[]string{"~> 1.0"}, []string{"~> 1"}, false}, // tilde precision matters
		{[]string{"~> 1.0"}, []string{"~> 1.1"}, false},
		{[]string{"< 9"}, []string{"<= 9"}, false},
	} {
		if got := parse(c.a...).Equal(parse(c.b...)); got != c.want {
			t.Errorf("%v == %v: %v, want %v", c.a, c.b, got, c.want)
		}
	}
	if got := parse("< 4.1.0", ">= 3.3.0").String(); got != "< 4.1.0, >= 3.3.0" {
		t.Errorf("String = %q", got)
	}
	if got := parse().String(); got != ">= 0" {
		t.Errorf("empty String = %q", got)
	}
	if _, err := ParseRequirement("~> "); err == nil {
		t.Error("ParseRequirement(\"~> \") succeeded")
	}
	if _, err := ParseRequirement("=< 1"); err == nil {
		t.Error("ParseRequirement(\"=< 1\") succeeded")
	}
}
