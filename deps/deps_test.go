package deps

import "testing"

func TestPurl(t *testing.T) {
	for _, c := range []struct {
		p    Package
		eco  Ecosystem
		want string
	}{
		{Package{Name: "@types/node", Version: "20.1.0"}, NPM, "pkg:npm/%40types/node@20.1.0"},
		{Package{Name: "ms", Version: "2.1.3"}, NPM, "pkg:npm/ms@2.1.3"},
		{Package{Name: "nokogiri", Version: "1.16.0", Platform: "x86_64-linux"}, Gem, "pkg:gem/nokogiri@1.16.0?platform=x86_64-linux"},
		{Package{Name: "rack", Version: "3.1.8", Platform: "ruby"}, Gem, "pkg:gem/rack@3.1.8"},
		{Package{Name: "libc6", Version: "2.41-12", Platform: "amd64"}, Deb, "pkg:deb/debian/libc6@2.41-12?arch=amd64"},
		{Package{Name: "nodejs", Version: "24.4.1+dfsg-1", Platform: "amd64"}, Deb, "pkg:deb/debian/nodejs@24.4.1%2Bdfsg-1?arch=amd64"},
	} {
		if got := c.p.Purl(c.eco); got != c.want {
			t.Errorf("Purl(%s %s) = %s, want %s", c.eco, c.p.Name, got, c.want)
		}
	}
}
