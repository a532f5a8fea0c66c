package config

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchhq/latch/schemas"
)

// This file is live configuration: a running process puts an edited config file in force without
// a restart ("Hooks are configuration: changing them needs no redeploy and takes effect in every
// process", ARCHITECTURE.md). Every `latch serve` and `latch worker` watches the same files on
// its own, so every process converges within a couple of polls and nothing travels between them.
//
// Kratos' rules apply (reference/kratos.md §7): a new configuration that fails validation is
// refused as a whole, and so is one that changes a key the process cannot change while it runs;
// either way an ERROR line names the key and the previous configuration stays in force.

// defaultReloadInterval is how often the files are read when the caller says 0.
const defaultReloadInterval = 2 * time.Second

// reloadRefused is the message of every refused reload, so that one search finds them all.
const reloadRefused = "configuration reload refused; the previous configuration stays in force"

// ApplyFunc is what a process does with a new configuration: put it in force, or refuse it with
// an error naming the key. It must put every key of reloadableKeys in force, all or nothing: when
// it fails, the previous configuration must still be the one in force.
type ApplyFunc func(cfg *Config) error

// reloadableKeys are the keys a running process puts in force again, through the ApplyFunc that
// serve and worker pass: core.Service.SetConfig (flows, their hooks, the password policy) and
// webhooks.Registry.Set (the web_hooks, signed with webhooks.signing_secrets unless they carry
// their own). Every other key is immutable while the process runs, and a reload that changes one
// is refused whole, naming it (Kratos' rule for serve and log):
//
//   - dsn, nats: the pool and the NATS connection are opened once;
//   - serve: the listeners are bound, and base_url is baked into identities and cookies;
//   - log: the logger is built once;
//   - tracing: the exporter and the tracer provider are installed once;
//   - identity: schemas are compiled once at start-up and core cannot swap its schema registry;
//   - hashers: the password hasher is built once (Kratos caches it too);
//   - session, secrets: the session manager takes lifespans, cookie settings and cookie secrets
//     at construction; they become reloadable when it can swap them and apply does;
//   - events, webhooks.worker, webhooks.allowed_networks: the stream is declared, the relay, the
//     worker's limits and the sender's SSRF guard are built at start-up.
//
// It is a list of what may change rather than of what may not, so that a key added later is
// refused until someone makes it reloadable: a change refused loudly beats one accepted that
// silently never takes effect.
var reloadableKeys = []string{
	"selfservice",
	"webhooks.signing_secrets",
}

// Watch keeps a running process's configuration in step with its files until ctx ends.
// paths, dev and env are what start-up loaded the configuration with, and current is the
// configuration it loaded (the watcher never modifies it).
//
// Every interval (0: 2 s) it reads the files and hashes their content. It polls rather than
// subscribing to file-system events (fsnotify) on purpose: inotify watches an inode, so an editor
// that saves by renaming a new file over the old one, an atomic `mv`, and a Kubernetes ConfigMap
// update (which swaps the `..data` symlink and never touches the file's own path) all either go
// unseen or leave the watch on a dead inode. Reading the path sees whatever the path holds now,
// however it got there; reading a few KiB every two seconds costs nothing, and it needs no new
// dependency.
//
// A new content is acted on once two polls in a row read it the same, so that a file caught
// half-written by an editor that writes in place is never applied (a truncated hook list is valid
// YAML, and applying it would drop hooks); a change takes effect within two intervals. It is then
// loaded with start-up's loader (Load), and:
//
//   - if it fails validation, or changes a key outside reloadableKeys, it is refused whole: an
//     ERROR line names the key and the previous configuration stays in force;
//   - otherwise apply puts it in force; if apply fails, the error is logged the same way and the
//     previous configuration stays;
//   - on success an INFO line lists the top-level keys that changed.
//
// A content is tried once: a refused one is not tried again until the files change. With no
// paths (--dev without files) there is nothing to watch and it returns at once.
func Watch(ctx context.Context, paths []string, dev bool, env []string, interval time.Duration,
	current *Config, apply ApplyFunc, log *slog.Logger) {
	WatchFor(ctx, paths, dev, env, true, interval, current, apply, log)
}

// WatchFor is Watch for a process that loaded its configuration with
// LoadFor(paths, dev, env, requireServe). `latch worker` passes false, so that a reload is
// judged by the rules its start-up was judged by (a worker's file needs no cookie secret).
func WatchFor(ctx context.Context, paths []string, dev bool, env []string, requireServe bool,
	interval time.Duration, current *Config, apply ApplyFunc, log *slog.Logger) {
	if len(paths) == 0 {
		return
	}
	if interval <= 0 {
		interval = defaultReloadInterval
	}
	paths = slices.Clone(paths)
	w := &configWatcher{
		paths:   paths,
		load:    func() (*Config, []string, error) { return LoadFor(paths, dev, env, requireServe) },
		apply:   apply,
		log:     log.With("files", paths),
		current: current,
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		w.poll()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// configWatcher is the state of one Watch loop, owned by it alone.
type configWatcher struct {
	paths   []string
	load    func() (*Config, []string, error)
	apply   ApplyFunc
	log     *slog.Logger
	current *Config // the configuration in force

	// seen is the content last acted on (applied, refused, or found equal to current); the zero
	// value matches no content, so the first stable read is compared with current, which catches
	// an edit made while the process was starting.
	seen [sha256.Size]byte
	// pending is a new content read once: it is acted on if the next poll reads it again.
	pending [sha256.Size]byte
	// readErr is the read failure last logged, so that a missing file is logged once, not at
	// every poll.
	readErr string
}

// poll reads the files once and acts on a content that has settled.
func (w *configWatcher) poll() {
	sum, err := hashFiles(w.paths)
	if err != nil {
		w.pending = [sha256.Size]byte{}
		if msg := err.Error(); msg != w.readErr {
			w.readErr = msg
			w.log.Warn("cannot read the configuration; the previous configuration stays in force", "error", err)
		}
		return
	}
	w.readErr = ""
	if sum == w.seen {
		w.pending = [sha256.Size]byte{}
		return
	}
	if sum != w.pending {
		w.pending = sum // maybe half-written: wait for the next poll to read the same
		return
	}
	w.seen, w.pending = sum, [sha256.Size]byte{}
	w.reload()
}

// reload loads the configuration and applies or refuses it.
func (w *configWatcher) reload() {
	cfg, warnings, err := w.load()
	if err != nil {
		w.logWarnings(warnings)
		w.refuse(err, problemKey(err))
		return
	}
	diff, err := configDiff(w.current, cfg)
	if err != nil {
		w.refuse(fmt.Errorf("config: compare with the configuration in force: %w", err), "")
		return
	}
	if len(diff) == 0 {
		w.log.Debug("configuration files changed; the configuration did not change")
		return
	}
	w.logWarnings(warnings)
	if keys := immutableKeys(diff); len(keys) > 0 {
		// All of them: changing serve.public.port also changes the base_url derived from it, and
		// the operator should see the key they edited.
		w.refuse(fmt.Errorf("config: %s: cannot change while the process runs; restart the process to change it",
			strings.Join(keys, ", ")), keys[0])
		return
	}
	if err := w.apply(cfg); err != nil {
		w.refuse(err, problemKey(err))
		return
	}
	w.current = cfg
	w.log.Info("configuration reloaded", "changed", topLevelKeys(diff))
}

func (w *configWatcher) refuse(err error, key string) {
	attrs := []any{"error", err}
	if key != "" {
		attrs = append(attrs, "key", key)
	}
	w.log.Error(reloadRefused, attrs...)
}

// logWarnings logs the loader's warnings for the new content, as start-up logs its own.
func (w *configWatcher) logWarnings(warnings []string) {
	for _, msg := range warnings {
		w.log.Warn(msg)
	}
}

// problemKey is the first key a *schemas.ConfigError names, or "".
func problemKey(err error) string {
	var ce *schemas.ConfigError
	if errors.As(err, &ce) && len(ce.Problems) > 0 {
		return ce.Problems[0].Key
	}
	return ""
}

// hashFiles hashes the content of the files, in order. Each file's length goes into the sum too,
// so that bytes moving from one file to the next change it. A file over the loader's size cap is
// hashed up to one byte past the cap, which is enough to see it change; the loader refuses it.
func hashFiles(paths []string) ([sha256.Size]byte, error) {
	h := sha256.New()
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("config: %w", err)
		}
		n, err := io.Copy(h, io.LimitReader(f, maxConfigFileSize+1))
		f.Close()
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("config: read %s: %w", p, err)
		}
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// immutableChange returns the dotted key (with list indexes, as errors name keys) of the first
// key outside reloadableKeys whose value differs between old and next, or "" when a process can
// put next in force while it runs. Keys are visited in sorted order. If the two cannot be
// compared it returns "(root)": refusing beats guessing.
func immutableChange(old, next *Config) string {
	diff, err := configDiff(old, next)
	if err != nil {
		return "(root)"
	}
	if keys := immutableKeys(diff); len(keys) > 0 {
		return keys[0]
	}
	return ""
}

// immutableKeys returns the keys of diff outside reloadableKeys, in order.
func immutableKeys(diff []string) []string {
	var out []string
	for _, key := range diff {
		if !reloadable(key) {
			out = append(out, key)
		}
	}
	return out
}

// reloadable reports whether key is, or is inside, one of reloadableKeys.
func reloadable(key string) bool {
	for _, p := range reloadableKeys {
		if key == p || strings.HasPrefix(key, p+".") || strings.HasPrefix(key, p+"[") {
			return true
		}
	}
	return false
}

// configDiff returns the keys whose values differ between a and b, as deep as both sides have
// the same shape (a list whose length changed is one key), in sorted key order. The two are
// compared as JSON trees, so a hook's config compares by value, not by how the file spelled it.
// Only keys come back, never values: they may hold secrets.
func configDiff(a, b *Config) ([]string, error) {
	ta, err := configTree(a)
	if err != nil {
		return nil, err
	}
	tb, err := configTree(b)
	if err != nil {
		return nil, err
	}
	var out []string
	diffTrees("", ta, tb, &out)
	return out, nil
}

func configTree(c *Config) (any, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, err
	}
	return tree, nil
}

func diffTrees(key string, a, b any, out *[]string) {
	switch ta := a.(type) {
	case map[string]any:
		if tb, ok := b.(map[string]any); ok {
			keys := make(map[string]any, len(ta)+len(tb))
			for k := range ta {
				keys[k] = nil
			}
			for k := range tb {
				keys[k] = nil
			}
			for _, k := range sortedKeys(keys) {
				child := k
				if key != "" {
					child = key + "." + k
				}
				diffTrees(child, ta[k], tb[k], out)
			}
			return
		}
	case []any:
		if tb, ok := b.([]any); ok && len(ta) == len(tb) {
			for i := range ta {
				diffTrees(key+"["+strconv.Itoa(i)+"]", ta[i], tb[i], out)
			}
			return
		}
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, key)
	}
}

// topLevelKeys returns the distinct top-level keys of dotted keys, in order.
func topLevelKeys(keys []string) []string {
	var out []string
	for _, k := range keys {
		if i := strings.IndexAny(k, ".["); i >= 0 {
			k = k[:i]
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}
