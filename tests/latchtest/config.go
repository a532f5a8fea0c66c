package latchtest

import (
	"bytes"
	"fmt"
	"os"
	"text/template"
)

// WriteConfig renders the text/template in tmplFile (a suite's testdata/latch.yaml.tmpl) with v
// and replaces path with the result atomically, a new file renamed over the old one, as `mv`,
// editors' safe writes and configuration management tools do: a process watching path never
// reads half a file.
func WriteConfig(path, tmplFile string, v any) error {
	tmpl, err := template.ParseFiles(tmplFile)
	if err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, v); err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
