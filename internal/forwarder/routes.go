package forwarder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/reelq/reelq"
	"github.com/reelq/reelq/internal/netguard"
)

// Routes says where a result goes: the URLs of its batch if the batch has
// a route, else those of its provider if it has one, else the default
// URLs (none: the result is not forwarded). The most specific route wins
// whole; routes do not add up.
type Routes struct {
	Default  []string
	Provider map[string][]string
	Batch    map[string][]string
}

// For returns the URLs a result of provider and batch goes to.
func (r Routes) For(provider, batch string) []string {
	if u, ok := r.Batch[batch]; ok && batch != "" {
		return u
	}
	if u, ok := r.Provider[provider]; ok {
		return u
	}
	return r.Default
}

// ParseRoutes reads the routes from the configuration's text forms:
// def is a space-separated URL list; providers and batches map a name to
// such a list. Each URL must be http or https with a host and no user
// info (credentials go in the query or path, which logs never show).
// Errors name the variable (under names, e.g. FORWARDER_URL) and the
// entry; a URL is shown without its query.
func ParseRoutes(def string, providers, batches map[string]string, names [3]string) (Routes, error) {
	var r Routes
	var err error
	if r.Default, err = parseURLs(names[0], def); err != nil {
		return Routes{}, err
	}
	parseMap := func(name string, m map[string]string, check func(string) error) (map[string][]string, error) {
		out := map[string][]string{}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if err := check(k); err != nil {
				return nil, fmt.Errorf("%s: %q: %w", name, k, err)
			}
			us, err := parseURLs(name+" "+k, m[k])
			if err != nil {
				return nil, err
			}
			out[k] = us
		}
		return out, nil
	}
	if r.Provider, err = parseMap(names[1], providers, func(p string) error {
		if !reelq.KnownProvider(p) {
			return fmt.Errorf("unknown provider (one of %s)", strings.Join(reelq.Providers, ", "))
		}
		return nil
	}); err != nil {
		return Routes{}, err
	}
	if r.Batch, err = parseMap(names[2], batches, func(b string) error {
		if !reelq.ValidID(b) {
			return fmt.Errorf("not a batch name (1-128 of A-Z a-z 0-9 _ -)")
		}
		return nil
	}); err != nil {
		return Routes{}, err
	}
	return r, nil
}

func parseURLs(name, s string) ([]string, error) {
	var out []string
	for _, raw := range strings.Fields(s) {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: not a URL", name, netguard.RedactURL(raw))
		}
		if err := netguard.CheckURL(u); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, netguard.Redact(u), err)
		}
		if !slices.Contains(out, raw) {
			out = append(out, raw)
		}
	}
	return out, nil
}

// All returns every URL of the routes, once each, sorted.
func (r Routes) All() []string {
	set := map[string]bool{}
	for _, u := range r.Default {
		set[u] = true
	}
	for _, m := range []map[string][]string{r.Provider, r.Batch} {
		for _, us := range m {
			for _, u := range us {
				set[u] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// urlKey names a URL in the ledger and in logs without revealing it: the
// first 12 hex digits of its SHA-256.
func urlKey(u string) string {
	h := sha256.Sum256([]byte(u))
	return hex.EncodeToString(h[:6])
}
