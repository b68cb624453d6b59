package recipe

import _ "embed"

// Schema is the recipe format's JSON Schema (draft 2020-12), for editors:
// point yaml-language-server at it with
//
//	# yaml-language-server: $schema=https://github.com/vmbuild/vmbuild/raw/main/recipe/schema.json
//
// `vmbuild schema` prints it.
//
//go:embed schema.json
var Schema []byte
