package netguard

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
)

// The guard refuses loopback by address and by a name resolving to it,
// and lets each kind of exception through. (The table of address kinds is
// tested through the archive's fetcher, internal/archive TestInternalAddresses.)
func TestDialRefusesInternal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dial := func(r Rules, host string) error {
		g, err := New(r)
		if err != nil {
			t.Fatal(err)
		}
		c, err := g.DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		if err := dial(Rules{}, host); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s with no exception: %v, want a loopback refusal", host, err)
		}
	}
	for _, r := range []Rules{{AllowPrivate: true}, {AllowHosts: []string{"127.0.0.1"}}, {AllowHosts: []string{"127.0.0.0/8"}}} {
		if err := dial(r, "127.0.0.1"); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	if _, err := New(Rules{AllowHosts: []string{"http://x"}}); err == nil {
		t.Error("a URL accepted as a host")
	}
}

func TestCheckURLAndRedact(t *testing.T) {
	for raw, ok := range map[string]bool{"https://h/x": true, "http://h": true, "ftp://h/x": false, "https://u:p@h/": false, "https:///x": false} {
		u, _ := url.Parse(raw)
		if err := CheckURL(u); (err == nil) != ok {
			t.Errorf("%s: %v", raw, err)
		}
	}
	if got := RedactURL("https://u:p@h/hook?token=s3cret#f"); got != "https://h/hook?…" {
		t.Errorf("redacted: %q", got)
	}
}
