package deb

import (
	"bytes"
	"crypto/sha1"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"sort"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// subjectHashOfPEM is OpenSSL's X509_NAME_hash (`openssl x509
// -subject_hash`, the name `openssl rehash` links by) of the first
// certificate in a PEM file.
func subjectHashOfPEM(b []byte) (string, bool) {
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return "", false
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return "", false
		}
		h, err := subjectHash(c.RawSubject)
		if err != nil {
			return "", false
		}
		return h, true
	}
	return "", false
}

// subjectHash canonicalises a DER Name as OpenSSL's x509_name_canon does
// (string values as lower-cased, space-collapsed, trimmed UTF8String;
// the SETs' encodings concatenated without the outer SEQUENCE) and
// returns the first four bytes of its SHA-1, little-endian, in hex.
func subjectHash(rawName []byte) (string, error) {
	in := cryptobyte.String(rawName)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return "", fmt.Errorf("name is not a SEQUENCE")
	}
	var canon []byte
	for !seq.Empty() {
		var set cryptobyte.String
		if !seq.ReadASN1(&set, cbasn1.SET) {
			return "", fmt.Errorf("RDN is not a SET")
		}
		var entries [][]byte
		for !set.Empty() {
			var atv cryptobyte.String
			if !set.ReadASN1(&atv, cbasn1.SEQUENCE) {
				return "", fmt.Errorf("attribute is not a SEQUENCE")
			}
			var oid cryptobyte.String
			var oidTag cbasn1.Tag
			if !atv.ReadAnyASN1Element(&oid, &oidTag) || oidTag != cbasn1.OBJECT_IDENTIFIER {
				return "", fmt.Errorf("attribute has no OID")
			}
			var val, valElem cryptobyte.String
			var tag cbasn1.Tag
			if !atv.ReadAnyASN1Element(&valElem, &tag) {
				return "", fmt.Errorf("attribute has no value")
			}
			val = valElem
			var body cryptobyte.String
			val.ReadASN1(&body, tag)
			b := cryptobyte.NewBuilder(nil)
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(oid)
				if s, ok := toUTF8(tag, body); ok {
					b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes(canonString(s)) })
				} else {
					b.AddBytes(valElem)
				}
			})
			e, err := b.Bytes()
			if err != nil {
				return "", err
			}
			entries = append(entries, e)
		}
		// DER orders a SET OF by encoding.
		sort.Slice(entries, func(i, j int) bool { return bytes.Compare(entries[i], entries[j]) < 0 })
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
			for _, e := range entries {
				b.AddBytes(e)
			}
		})
		s, err := b.Bytes()
		if err != nil {
			return "", err
		}
		canon = append(canon, s...)
	}
	sum := sha1.Sum(canon)
	return fmt.Sprintf("%08x", binary.LittleEndian.Uint32(sum[:4])), nil
}

// toUTF8 converts the string types OpenSSL canonicalises
// (ASN1_MASK_CANON) to UTF-8; ok is false for other types.
func toUTF8(tag cbasn1.Tag, b []byte) ([]byte, bool) {
	switch tag {
	case cbasn1.UTF8String, 19 /* PrintableString */, 22 /* IA5String */, 26 /* VisibleString */ :
		return b, true
	case 20: // T61String, read as Latin-1 as OpenSSL does
		var out []byte
		for _, c := range b {
			out = utf8.AppendRune(out, rune(c))
		}
		return out, true
	case 30: // BMPString, UTF-16BE
		if len(b)%2 != 0 {
			return nil, false
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = binary.BigEndian.Uint16(b[2*i:])
		}
		var out []byte
		for _, r := range utf16.Decode(u) {
			out = utf8.AppendRune(out, r)
		}
		return out, true
	case 28: // UniversalString, UTF-32BE
		if len(b)%4 != 0 {
			return nil, false
		}
		var out []byte
		for i := 0; i < len(b); i += 4 {
			out = utf8.AppendRune(out, rune(binary.BigEndian.Uint32(b[i:])))
		}
		return out, true
	}
	return nil, false
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// canonString is OpenSSL's asn1_string_canon on UTF-8 bytes: trim
// leading and trailing white space, collapse runs of it to one space,
// lower-case ASCII letters.
func canonString(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= 0x80:
			out = append(out, c)
			i++
		case isSpace(c):
			out = append(out, ' ')
			for i < len(s) && isSpace(s[i]) {
				i++
			}
		default:
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			out = append(out, c)
			i++
		}
	}
	return out
}
