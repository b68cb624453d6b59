package deb

import "time"

// Record is what a lock should keep about the index a resolution came
// from: enough to say which signed index the pins were taken from, to
// re-verify it, and to tell a reader that an expired index was accepted.
type Record struct {
	Mirror     string   `json:"mirror"`
	Suite      string   `json:"suite"`
	Codename   string   `json:"codename,omitempty"`
	Components []string `json:"components"`
	Arch       string   `json:"arch"`
	// InRelease is the sha256 of the InRelease file as fetched.
	InRelease  string     `json:"inRelease"`
	Date       time.Time  `json:"date"`
	ValidUntil *time.Time `json:"validUntil,omitempty"`
	// Signer is the primary key's fingerprint, SigningKey the (sub)key
	// that signed; either can go in Source.SignedBy.
	Signer     string `json:"signer"`
	SigningKey string `json:"signingKey,omitempty"`
	// AllowedExpired is true when Valid-Until had passed and the source's
	// AllowExpired accepted it.
	AllowedExpired bool        `json:"allowedExpired,omitempty"`
	Files          []IndexFile `json:"files"`
}

// Record summarises the index for a lock. It is meaningful for an index
// from Open (NewIndex without a Release gives only the source fields).
func (ix *Index) Record() Record {
	r := Record{
		Mirror:     ix.Source.Mirror,
		Suite:      ix.Source.Suite,
		Components: append([]string(nil), ix.Source.Components...),
		Arch:       ix.Source.Arch,
		Files:      append([]IndexFile(nil), ix.Files...),
	}
	if rel := ix.Release; rel != nil {
		r.Codename = rel.Codename
		r.InRelease = rel.SHA256
		r.Date = rel.Date
		if !rel.ValidUntil.IsZero() {
			v := rel.ValidUntil
			r.ValidUntil = &v
		}
		r.Signer, r.SigningKey = rel.Signer, rel.SigningKey
		if r.SigningKey == r.Signer {
			r.SigningKey = ""
		}
		r.AllowedExpired = rel.Expired
	}
	return r
}
