package core

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"sigs.k8s.io/yaml"
)

// diffContext is how many unchanged lines surround a change, as diff -u.
const diffContext = 3

// Diff returns a unified diff from live (nil: the object does not exist)
// to merged, as `kubectl diff` prints it, or "" when they do not differ.
// Both are compared as YAML without what the server changes on every write
// or sets on its own (metadata.uid, resourceVersion, generation,
// creationTimestamp, status), so the diff shows only what an apply
// changes. Secret values are masked as kubectl masks them: "***", and
// "*** (before)" / "*** (after)" where a value changes.
func Diff(live, merged Object) (string, error) {
	if merged == nil {
		return "", Errorf(EINTERNAL, "diff: no object to compare with")
	}
	from, err := diffable(live)
	if err != nil {
		return "", err
	}
	to, err := diffable(merged)
	if err != nil {
		return "", err
	}
	if _, ok := merged.(*Secret); ok {
		maskSecret(from, to)
	}
	a, err := yamlLines(from)
	if err != nil {
		return "", err
	}
	b, err := yamlLines(to)
	if err != nil {
		return "", err
	}
	name := diffName(merged)
	return unifiedDiff(a, b, "live/"+name, "merged/"+name), nil
}

// diffName names an object as kubectl diff names its files:
// apps.v1.Deployment.default.web.
func diffName(o Object) string {
	tm, m := o.GetTypeMeta(), o.GetMeta()
	parts := []string{strings.ReplaceAll(tm.Kind.APIVersion(), "/", "."), string(tm.Kind)}
	if m.Namespace != "" {
		parts = append(parts, m.Namespace)
	}
	return strings.Join(append(parts, m.Name), ".")
}

// diffable returns o as generic JSON without the fields an apply does not
// set; nil for a nil o.
func diffable(o Object) (map[string]any, error) {
	if o == nil || reflect.ValueOf(o).IsNil() {
		return nil, nil
	}
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"} {
			delete(md, f)
		}
	}
	return m, nil
}

// maskSecret hides a Secret's values in both versions, telling only
// whether each one changes (kubectl diff's masker).
func maskSecret(from, to map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		a, _ := from[field].(map[string]any)
		b, _ := to[field].(map[string]any)
		for k, av := range a {
			bv, ok := b[k]
			if ok && !reflect.DeepEqual(av, bv) {
				a[k], b[k] = "*** (before)", "*** (after)"
				continue
			}
			a[k] = "***"
			if ok {
				b[k] = "***"
			}
		}
		for k := range b {
			if _, ok := a[k]; !ok {
				b[k] = "***"
			}
		}
	}
}

// yamlLines renders m as YAML lines, each with its newline; none for nil.
func yamlLines(m map[string]any) ([]string, error) {
	if m == nil {
		return nil, nil
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfter(string(b), "\n") // Marshal ends with one
	return lines[:len(lines)-1], nil
}

// unifiedDiff renders the changes from a to b as diff -u -N does, with a
// "diff -u -N" line first as kubectl diff prints it; "" if a equals b.
// The matcher runs without difflib's "popular line" heuristic, which on
// inputs of 200 lines or more ignores frequent lines (every "protocol:
// TCP") and so makes longer diffs than needed.
func unifiedDiff(a, b []string, fromName, toName string) string {
	groups := difflib.NewMatcherWithJunk(a, b, false, nil).GetGroupedOpCodes(diffContext)
	if len(groups) == 0 {
		return ""
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "diff -u -N %s %s\n--- %s\n+++ %s\n", fromName, toName, fromName, toName)
	for _, g := range groups {
		first, last := g[0], g[len(g)-1]
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", hunkRange(first.I1, last.I2), hunkRange(first.J1, last.J2))
		for _, c := range g {
			if c.Tag == 'e' {
				for _, l := range a[c.I1:c.I2] {
					sb.WriteString(" " + l)
				}
				continue
			}
			if c.Tag == 'r' || c.Tag == 'd' {
				for _, l := range a[c.I1:c.I2] {
					sb.WriteString("-" + l)
				}
			}
			if c.Tag == 'r' || c.Tag == 'i' {
				for _, l := range b[c.J1:c.J2] {
					sb.WriteString("+" + l)
				}
			}
		}
	}
	return sb.String()
}

// hunkRange formats lines [start, stop) of a hunk header as diff -u does:
// "5" for one line, "5,3" for three, "4,0" for none after line 4.
func hunkRange(start, stop int) string {
	n := stop - start
	switch n {
	case 1:
		return fmt.Sprint(start + 1)
	case 0:
		return fmt.Sprintf("%d,0", start)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
