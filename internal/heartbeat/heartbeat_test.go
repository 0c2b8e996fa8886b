package heartbeat

import "testing"

// A worker id is any string (a host name with dots, say): its subject is
// one token, so a record never lands on another worker's subject or
// outside workers.*.
func TestSubjectIsOneToken(t *testing.T) {
	for id, want := range map[string]string{
		"w1":                   "workers.w1",
		"host-1.example.com-7": "workers.host-1_example_com-7",
		"a*b>c d":              "workers.a_b_c_d",
		"ünï":                  "workers._n_",
	} {
		if got := Subject(id); got != want {
			t.Errorf("Subject(%q) = %q, want %q", id, got, want)
		}
	}
}
