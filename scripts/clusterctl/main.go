// Command clusterctl is the small helper scripts/cluster.sh uses instead of
// curl and jq (a fresh machine has Go, not necessarily those): it waits for
// HTTP endpoints, reads a NATS server's monitoring endpoint to find a
// stream's leader, summarises a results file and asks the provider
// simulator how many paid submissions it accepted.
//
//	clusterctl wait URL [TIMEOUT]                 until URL answers 200
//	clusterctl meta-leader TIMEOUT MONITOR_URL... until the meta leader sees every listed server current; print it
//	clusterctl stream-leader STREAM MONITOR_URL...print the server name leading STREAM
//	clusterctl results WANT [FILE]                count result lines and distinct job ids
//	clusterctl submissions SIM_URL PROVIDER...    accepted submissions per prompt/title
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "wait":
		err = wait(args)
	case "meta-leader":
		err = metaLeader(args)
	case "stream-leader":
		err = streamLeader(args)
	case "results":
		err = results(args)
	case "submissions":
		err = submissions(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clusterctl:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: clusterctl wait|meta-leader|stream-leader|results|submissions ... (see the source)")
	os.Exit(2)
}

var client = &http.Client{Timeout: 3 * time.Second}

func get(url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func timeoutArg(args []string, i int, def time.Duration) (time.Duration, error) {
	if len(args) <= i {
		return def, nil
	}
	return time.ParseDuration(args[i])
}

func wait(args []string) error {
	if len(args) < 1 {
		usage()
	}
	d, err := timeoutArg(args, 1, 60*time.Second)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	for {
		err := get(args[0], nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %w", d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func jsz(monitor string) (*server.JSInfo, error) {
	var info server.JSInfo
	err := get(strings.TrimSuffix(monitor, "/")+"/jsz?accounts=true&streams=true", &info)
	return &info, err
}

func metaLeader(args []string) error {
	if len(args) < 2 {
		usage()
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		return err
	}
	deadline := time.Now().Add(d)
	want := len(args) - 1 // every listed server is a peer
	for {
		for _, m := range args[1:] {
			info, err := jsz(m)
			if err != nil || info.Meta == nil || info.Meta.Leader == "" || len(info.Meta.Replicas) != want-1 {
				continue
			}
			// Asked of the leader: every other peer is seen and caught up, so
			// an R3 placement finds three peers.
			ready := true
			for _, p := range info.Meta.Replicas {
				ready = ready && p.Current && !p.Offline
			}
			if ready {
				fmt.Println(info.Meta.Leader)
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no JetStream meta leader after %s", d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func streamLeader(args []string) error {
	if len(args) < 2 {
		usage()
	}
	stream := args[0]
	var errs []error
	for _, m := range args[1:] {
		info, err := jsz(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, acc := range info.AccountDetails {
			for _, s := range acc.Streams {
				if s.Name == stream && s.Cluster != nil && s.Cluster.Leader != "" {
					fmt.Println(s.Cluster.Leader)
					return nil
				}
			}
		}
	}
	return fmt.Errorf("no leader found for stream %s: %w", stream, errors.Join(errs...))
}

// results reads result events (JSON lines, as enqueue writes them) and
// reports the line count, distinct job ids, duplicates and statuses. It
// fails unless every one of WANT jobs has exactly one line.
func results(args []string) error {
	if len(args) < 1 {
		usage()
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if len(args) > 1 {
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	perID := map[string]int{}
	status := map[string]int{}
	lines := 0
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("line %d: %w", lines+1, err)
		}
		lines++
		perID[r.ID]++
		status[r.Status]++
	}
	if err := sc.Err(); err != nil {
		return err
	}
	var dups []string
	for id, n := range perID {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s x%d", id, n))
		}
	}
	slices.Sort(dups)
	fmt.Printf("result events: %d, distinct job ids: %d, jobs: %d, statuses: %v\n", lines, len(perID), want, status)
	if len(dups) > 0 {
		fmt.Printf("duplicates: %s\n", strings.Join(dups, ", "))
	}
	if lines != want || len(perID) != want {
		return fmt.Errorf("want exactly one result event per job: %d events for %d distinct ids, %d jobs", lines, len(perID), want)
	}
	return nil
}

// submissions prints how many paid submissions the simulator accepted per
// provider and how many prompts it saw more than once.
func submissions(args []string) error {
	if len(args) < 2 {
		usage()
	}
	var stats map[string]struct {
		Submissions map[string]int `json:"submissions"`
		Requests    map[string]int `json:"requests"`
	}
	if err := get(strings.TrimSuffix(args[0], "/")+"/admin/stats", &stats); err != nil {
		return err
	}
	for _, p := range args[1:] {
		st := stats[p]
		total, twice := 0, 0
		for _, n := range st.Submissions {
			total += n
			if n > 1 {
				twice++
			}
		}
		fmt.Printf("%s: %d paid submissions for %d distinct inputs (%d submitted more than once); calls %v\n",
			p, total, len(st.Submissions), twice, st.Requests)
	}
	return nil
}
