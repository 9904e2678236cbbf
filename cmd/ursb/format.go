package main

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/template"
)

// goTemplate parses a --format that is a Go template, as podman takes
// them ({{.Name}} {{.Status}}), with a json function for whole values.
func goTemplate(format string) (*template.Template, error) {
	t, err := template.New("format").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
	}).Parse(format)
	if err != nil {
		return nil, fmt.Errorf("--format %q: %v", format, err)
	}
	return t, nil
}

// printTemplate prints each of items through t, one line each.
func printTemplate(w io.Writer, t *template.Template, items ...any) error {
	for _, it := range items {
		var b strings.Builder
		if err := t.Execute(&b, it); err != nil {
			return fmt.Errorf("--format: %v", err)
		}
		fmt.Fprintln(w, strings.TrimSuffix(b.String(), "\n"))
	}
	return nil
}

// psFilter is one --filter KEY=VALUE of ps: name (a regular expression, as
// podman takes it), status, or id (a prefix).
type psFilter struct {
	key, value string
	re         *regexp.Regexp
}

func parsePSFilters(flags []string) ([]psFilter, error) {
	var out []psFilter
	for _, f := range flags {
		key, value, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--filter %s: use KEY=VALUE with name, status or id", f)
		}
		pf := psFilter{key: key, value: value}
		switch key {
		case "name":
			re, err := regexp.Compile(value)
			if err != nil {
				return nil, fmt.Errorf("--filter %s: %v", f, err)
			}
			pf.re = re
		case "status":
			switch value {
			case "created", "running", "paused", "exited", "unknown":
			default:
				return nil, fmt.Errorf("--filter %s: status is one of created, running, paused, exited, unknown", f)
			}
		case "id":
		default:
			return nil, fmt.Errorf("--filter %s: ursb filters on name, status and id", f)
		}
		out = append(out, pf)
	}
	return out, nil
}

// match tells whether p passes every filter of one key and at least one of
// each key given (podman's rule: filters of one key are alternatives).
func matchPS(filters []psFilter, p psEntry) bool {
	byKey := map[string]bool{}
	seen := map[string]bool{}
	for _, f := range filters {
		seen[f.key] = true
		var ok bool
		switch f.key {
		case "name":
			ok = f.re.MatchString(p.Name)
		case "status":
			ok = p.Status == f.value
		case "id":
			ok = strings.HasPrefix(p.ID, f.value)
		}
		byKey[f.key] = byKey[f.key] || ok
	}
	for k := range seen {
		if !byKey[k] {
			return false
		}
	}
	return true
}
