package media_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/reelq/reelq/internal/media"
)

// An output is inspected while it is copied, then checked.
func Example() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1></body></html>") // a paid "success"
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()

	in := media.New(resp.Header.Get("Content-Type"), resp.ContentLength)
	var archive strings.Builder // the archive's store
	if _, err := io.Copy(&archive, io.TeeReader(resp.Body, in)); err != nil {
		panic(err)
	}
	err = in.Report().Check(media.Expect{Types: []string{"video/*"}})
	var ve *media.ValidationError
	fmt.Println(errors.Is(err, media.ErrInvalid), errors.As(err, &ve) && ve.Code == media.CodeNotMedia)
	fmt.Println(err)
	// Output:
	// true true
	// invalid output (not_media): the body is an HTML page, not media (served as video/mp4)
}
