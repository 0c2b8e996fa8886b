// Package netguard keeps outbound HTTP away from internal addresses
// (server-side request forgery): loopback, link-local (cloud metadata),
// private and carrier-grade NAT ranges are refused unless allowed, and
// unspecified, broadcast and multicast addresses always. The check runs
// on every address actually dialed, after name resolution, so a public
// name that resolves to an internal address is refused too. The archive's
// downloads and the result forwarder's webhooks share it.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrUnsafe means a URL, a redirect or the address a name resolved to is
// not allowed (scheme, user info, internal address). Permanent.
var ErrUnsafe = errors.New("unsafe url")

// Rules are the exceptions to the internal-address rule. The zero value
// allows none.
type Rules struct {
	// AllowPrivate lets connections reach loopback, link-local, private
	// and carrier-grade NAT addresses. Unspecified, broadcast and
	// multicast addresses stay refused. Meant for development only.
	AllowPrivate bool
	// AllowHosts lists exceptions. An entry is a host name (matched
	// exactly, case-insensitively, against the URL's host: any address it
	// resolves to is then allowed), an IP address, or a CIDR prefix (an
	// address in it is allowed whatever the name).
	AllowHosts []string
}

// Guard checks dialed addresses against Rules. It is safe for concurrent
// use.
type Guard struct {
	allowPrivate bool
	hosts        map[string]bool
	nets         []netip.Prefix
}

// New builds a Guard. It fails on an AllowHosts entry that is neither a
// host name, an address nor a prefix.
func New(r Rules) (*Guard, error) {
	g := &Guard{allowPrivate: r.AllowPrivate, hosts: map[string]bool{}}
	for _, h := range r.AllowHosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			continue
		case strings.Contains(h, "/"):
			p, err := netip.ParsePrefix(h)
			if err != nil {
				return nil, fmt.Errorf("AllowHosts entry %q: %w", h, err)
			}
			g.nets = append(g.nets, p.Masked())
		default:
			if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
				a = a.Unmap()
				g.nets = append(g.nets, netip.PrefixFrom(a, a.BitLen()))
				continue
			}
			if strings.ContainsAny(h, ":@?# ") {
				return nil, fmt.Errorf("AllowHosts entry %q: want a host name, an address or a CIDR prefix", h)
			}
			g.hosts[strings.ToLower(strings.TrimSuffix(h, "."))] = true
		}
	}
	return g, nil
}

// DialContext connects to addr, checking every address actually dialed
// (after resolution, for each address tried) in the dialer's Control
// function. Use it as an http.Transport's DialContext, with no proxy.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	trustedName := g.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
	d := net.Dialer{
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			if trustedName {
				return nil
			}
			return g.CheckAddr(host, address)
		},
	}
	return d.DialContext(ctx, network, addr)
}

// CheckAddr refuses an internal address that the rules do not allow.
// host is the name being dialed (for the message), address the "ip:port"
// being connected to.
func (g *Guard) CheckAddr(host, address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialed address %q", ErrUnsafe, address)
	}
	ip := ap.Addr().Unmap().WithZone("")
	for _, p := range g.nets {
		if p.Contains(ip) {
			return nil
		}
	}
	kind, always := Internal(ip)
	if kind == "" || (g.allowPrivate && !always) {
		return nil
	}
	if host == ip.String() {
		return fmt.Errorf("%w: %s is a %s address", ErrUnsafe, ip, kind)
	}
	return fmt.Errorf("%w: %s resolves to %s, a %s address", ErrUnsafe, host, ip, kind)
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	sharedCGNAT = netip.MustParsePrefix("100.64.0.0/10")
	broadcast   = netip.MustParseAddr("255.255.255.255")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")
)

// Internal names the kind of internal address ip is ("" for a public
// one); always reports kinds that AllowPrivate does not open.
func Internal(ip netip.Addr) (kind string, always bool) {
	switch {
	case ip.IsUnspecified() || thisNetwork.Contains(ip):
		return "unspecified", true
	case ip == broadcast:
		return "broadcast", true
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsLinkLocalMulticast():
		return "multicast", true
	case ip.IsLoopback():
		return "loopback", false
	case ip.IsLinkLocalUnicast():
		return "link-local", false
	case ip.IsPrivate():
		return "private", false
	case sharedCGNAT.Contains(ip):
		return "carrier-grade NAT", false
	case nat64.Contains(ip):
		b := ip.As16()
		if k, a := Internal(netip.AddrFrom4([4]byte(b[12:16]))); k != "" {
			return "NAT64 " + k, a
		}
	case sixToFour.Contains(ip):
		b := ip.As16()
		if k, a := Internal(netip.AddrFrom4([4]byte(b[2:6]))); k != "" {
			return "6to4 " + k, a
		}
	}
	return "", false
}

// CheckURL enforces the URL rules (http or https, a host, no user info)
// on a first URL and on each redirect.
func CheckURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	default:
		return fmt.Errorf("%w: scheme %q (only http and https)", ErrUnsafe, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: user info in the URL", ErrUnsafe)
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return fmt.Errorf("%w: no host", ErrUnsafe)
	}
	return nil
}

// Redact returns u without user info, query or fragment ("?…" marks a
// dropped query): signed URLs and webhook URLs keep credentials there.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := r.String()
	if u.RawQuery != "" {
		s += "?…"
	}
	return s
}

// RedactURL is Redact for a URL given as text, for logs and errors.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable url)"
	}
	return Redact(u)
}
