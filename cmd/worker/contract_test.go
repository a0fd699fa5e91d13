package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestContractDocumentMatchesTheCode: docs/CONTRACT.md, what upstream
// relies on, names every job type, response field, error code, cancel state
// and environment variable the code has, and the README names every
// variable too.
func TestContractDocumentMatchesTheCode(t *testing.T) {
	root := repo.Root(t)
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	contract, readme := read("docs/CONTRACT.md"), read("README.md")

	var want []string
	for _, src := range []struct{ file, pattern string }{
		{"jobs/job.go", `Type\s*=\s*"([a-z]+)"`},
		{"jobs/response.go", `(?:Code|CancelState|Status)\s*=\s*"([a-z_]+)"`},
	} {
		for _, m := range regexp.MustCompile(src.pattern).FindAllStringSubmatch(read(src.file), -1) {
			want = append(want, "`"+m[1]+"`")
		}
	}
	for _, f := range jsonFields(reflect.TypeFor[jobs.Response]()) {
		want = append(want, "`"+f+"`")
	}
	vars := regexp.MustCompile(`p\.\w+\("([A-Z0-9_]+)"`).FindAllStringSubmatch(read("internal/config/config.go"), -1)
	if len(vars) < 20 {
		t.Fatalf("found %d variables in internal/config: the pattern no longer matches", len(vars))
	}
	for _, v := range vars {
		want = append(want, "`"+v[1]+"`")
		if !strings.Contains(readme, "`"+v[1]+"`") {
			t.Errorf("README.md does not document %s", v[1])
		}
	}
	for _, w := range want {
		if !strings.Contains(contract, w) {
			t.Errorf("docs/CONTRACT.md does not name %s", w)
		}
	}
	for _, doc := range []string{"README.md", "infra/README.md"} {
		if !strings.Contains(read(doc), "docs/CONTRACT.md") {
			t.Errorf("%s does not link docs/CONTRACT.md", doc)
		}
	}
}

// jsonFields returns the JSON names of t's fields, nested structs
// included.
func jsonFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
		if f.Type.PkgPath() != "time" {
			names = append(names, jsonFields(f.Type)...)
		}
	}
	return names
}
