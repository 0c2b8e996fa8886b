package archive

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// DefaultBucket is the JetStream object store bucket for archived outputs.
const DefaultBucket = "reelq_outputs"

// DefaultChunkSize is the chunk size JetStreamStore writes objects in:
// nats.go's default for object stores.
const DefaultChunkSize = 128 * 1024

// BucketConfig is the configuration of the archive's JetStream object
// store: file storage with the given replicas, keeping each object for
// retention after it was last written (the object store's TTL, the
// underlying stream's MaxAge; 0 keeps objects until deleted).
func BucketConfig(replicas int, retention time.Duration) jetstream.ObjectStoreConfig {
	if replicas < 1 {
		replicas = 1
	}
	return jetstream.ObjectStoreConfig{
		Bucket:      DefaultBucket,
		Description: "reelq: archived copies of provider outputs",
		TTL:         retention,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// validBucket is the object store's own rule for bucket names.
var validBucket = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// JetStreamStore is a Store on a JetStream object store bucket.
type JetStreamStore struct {
	js        jetstream.JetStream
	obs       jetstream.ObjectStore
	stream    jetstream.Stream
	bucket    string
	chunkSize uint32
}

var _ Store = (*JetStreamStore)(nil)

// NewJetStreamStore binds to the existing object store bucket. It does
// not create the bucket: stream setup does, with BucketConfig.
func NewJetStreamStore(ctx context.Context, js jetstream.JetStream, bucket string) (*JetStreamStore, error) {
	if !validBucket.MatchString(bucket) {
		return nil, fmt.Errorf("archive: jetstream bucket %q: only letters, digits, '-' and '_' are allowed", bucket)
	}
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("archive: jetstream object store %q does not exist (create it with archive.BucketConfig): %w", bucket, err)
		}
		return nil, fmt.Errorf("archive: jetstream object store %q: %w", bucket, err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return nil, fmt.Errorf("archive: jetstream object store %q: stream: %w", bucket, err)
	}
	return &JetStreamStore{js: js, obs: obs, stream: stream, bucket: bucket, chunkSize: DefaultChunkSize}, nil
}

// SetChunkSize sets the chunk size of later Puts (bytes; at most the
// server's max_payload). Call it before the store is shared.
func (s *JetStreamStore) SetChunkSize(n int) {
	if n > 0 {
		s.chunkSize = uint32(n)
	}
}

// Name returns "jetstream".
func (s *JetStreamStore) Name() string { return KindJetStream }

// Bucket returns the bucket name.
func (s *JetStreamStore) Bucket() string { return s.bucket }

// Put writes the object in the object store's format (the chunks on a
// new subject, then the metadata as a rollup, then a purge of the old
// chunks), so readers see the old or the new object and a failed Put
// purges its own chunks. It publishes the chunks itself, with at most
// putWindow unacknowledged, instead of calling nats.go's ObjectStore.Put:
// that makes a JetStream context per call whose reconnect watcher
// goroutine can miss its channel and block forever (nats.go v1.55, seen
// as a leak in about 1% of Puts), and bounds the memory of a Put at
// putWindow chunks.
func (s *JetStreamStore) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) (Copy, error) {
	if err := checkKey(key); err != nil {
		return Copy{}, err
	}
	fail := func(err error) (Copy, error) {
		return Copy{}, fmt.Errorf("archive: jetstream put %s/%s: %w", s.bucket, key, err)
	}
	old, err := s.obs.GetInfo(ctx, key, jetstream.GetObjectInfoShowDeleted())
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fail(err)
	}
	id := nuid.Next()
	chunkSubj := fmt.Sprintf("$O.%s.C.%s", s.bucket, id)
	pr := newPutReader(r, size)
	info := &jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: key, Opts: &jetstream.ObjectMetaOptions{ChunkSize: s.chunkSize}},
		Bucket:     s.bucket,
		NUID:       id,
	}
	if contentType != "" {
		info.Headers = nats.Header{"Content-Type": []string{contentType}}
	}
	if err := s.putChunks(ctx, chunkSubj, fillReader{pr}, info); err != nil {
		return fail(err)
	}
	info.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(pr.h.Sum(nil))
	data, err := json.Marshal(info)
	if err != nil {
		s.purge(chunkSubj)
		return fail(err)
	}
	mm := nats.NewMsg(fmt.Sprintf("$O.%s.M.%s", s.bucket, base64.URLEncoding.EncodeToString([]byte(key))))
	mm.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	mm.Data = data
	if _, err := s.js.PublishMsg(ctx, mm); err != nil {
		// The metadata may have been stored even so (a lost ack); only
		// purge the new chunks when it was not.
		if cur, gerr := s.obs.GetInfo(context.WithoutCancel(ctx), key); gerr != nil || cur.NUID != id {
			s.purge(chunkSubj)
		}
		return fail(err)
	}
	if old != nil && !old.Deleted && old.NUID != "" {
		s.purge(fmt.Sprintf("$O.%s.C.%s", s.bucket, old.NUID))
	}
	c := s.copyOf(info)
	c.SHA256 = pr.sum()
	return c, nil
}

// putWindow is how many chunks a Put keeps unacknowledged.
const putWindow = 32

// ackTimeout bounds the wait for one chunk's acknowledgement.
const ackTimeout = 30 * time.Second

// putChunks publishes r's bytes as chunks on subj and sets info's size and
// chunk count. On failure it waits for the chunks in flight and purges
// them.
func (s *JetStreamStore) putChunks(ctx context.Context, subj string, r io.Reader, info *jetstream.ObjectInfo) (err error) {
	var (
		bufs    [putWindow][]byte
		futs    [putWindow]jetstream.PubAckFuture
		timer   = time.NewTimer(ackTimeout)
		waitAck = func(ctx context.Context, f jetstream.PubAckFuture) error {
			timer.Reset(ackTimeout)
			select {
			case <-f.Ok():
				return nil
			case err := <-f.Err():
				return err
			case <-timer.C:
				return fmt.Errorf("no acknowledgement of a chunk within %v", ackTimeout)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	)
	defer timer.Stop()
	defer func() {
		if err == nil {
			return
		}
		// Let the chunks in flight land (or fail) before purging, or a
		// late one would outlive the purge.
		drain, cancel := context.WithTimeout(context.Background(), ackTimeout)
		defer cancel()
		for _, f := range futs {
			if f != nil {
				_ = waitAck(drain, f)
			}
		}
		s.purge(subj)
	}()
	for i := 0; ; i++ {
		slot := i % putWindow
		if f := futs[slot]; f != nil {
			futs[slot] = nil
			if err := waitAck(ctx, f); err != nil {
				return err
			}
		}
		if bufs[slot] == nil {
			bufs[slot] = make([]byte, s.chunkSize)
		}
		n, rerr := r.Read(bufs[slot])
		if rerr != nil && rerr != io.EOF {
			return rerr
		}
		if n > 0 {
			// The message keeps its buffer until acknowledged: nats.go
			// may send it again.
			f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: bufs[slot][:n]})
			if err != nil {
				return err
			}
			futs[slot] = f
			info.Size += uint64(n)
			info.Chunks++
		}
		if rerr == io.EOF {
			break
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	for slot, f := range futs {
		if f != nil {
			futs[slot] = nil
			if err := waitAck(ctx, f); err != nil {
				return err
			}
		}
	}
	return nil
}

// purge removes the messages on a chunk subject, best effort, also when
// the Put's context has ended.
func (s *JetStreamStore) purge(subj string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.stream.Purge(ctx, jetstream.WithPurgeSubject(subj))
}

// Open returns a reader of the object, which checks its size and SHA-256
// digest when it reaches the end. It reads the chunks one at a time by
// direct get (the next message on the object's chunk subject), not with
// nats.go's ObjectStore.Get: that creates a consumer, state on the server
// that any identity allowed to read outputs could pile up until nobody
// can (SECURITY.md); a direct get leaves nothing behind, even when the
// reader is abandoned.
func (s *JetStreamStore) Open(ctx context.Context, key string) (io.ReadCloser, Copy, error) {
	info, err := s.obs.GetInfo(ctx, key)
	if err != nil {
		return nil, Copy{}, s.err("get", key, err)
	}
	if info.NUID == "" || info.Opts != nil && info.Opts.Link != nil {
		return nil, Copy{}, fmt.Errorf("archive: jetstream get %s/%s: not an object reelq wrote (a link, or no chunks)", s.bucket, key)
	}
	want, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil && info.Size > 0 {
		return nil, Copy{}, fmt.Errorf("archive: jetstream get %s/%s: digest %q: %w", s.bucket, key, info.Digest, err)
	}
	return &chunkReader{ctx: ctx, stream: s.stream, subj: "$O." + s.bucket + ".C." + info.NUID, left: info.Chunks,
		size: info.Size, want: want, h: sha256.New(), seq: 1, name: s.bucket + "/" + key}, s.copyOf(info), nil
}

// chunkReader reads an object's chunks in order by direct get.
type chunkReader struct {
	ctx    context.Context
	stream jetstream.Stream
	subj   string
	name   string
	seq    uint64 // where the next chunk is looked for
	left   uint32 // chunks still to read
	size   uint64
	read   uint64
	buf    []byte
	want   []byte
	h      hash.Hash
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.left == 0 {
			if r.read != r.size || (r.size > 0 && !bytes.Equal(r.h.Sum(nil), r.want)) {
				return 0, fmt.Errorf("archive: jetstream get %s: %d bytes read of %d, or a digest mismatch", r.name, r.read, r.size)
			}
			return 0, io.EOF
		}
		m, err := r.stream.GetMsg(r.ctx, r.seq, jetstream.WithGetMsgSubject(r.subj))
		if err != nil {
			return 0, fmt.Errorf("archive: jetstream get %s: chunk after sequence %d: %w", r.name, r.seq, err)
		}
		r.seq, r.left, r.buf = m.Sequence+1, r.left-1, m.Data
		r.read += uint64(len(m.Data))
		r.h.Write(m.Data)
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

// Stat returns the object's copy.
func (s *JetStreamStore) Stat(ctx context.Context, key string) (Copy, error) {
	info, err := s.obs.GetInfo(ctx, key)
	if err != nil {
		return Copy{}, s.err("stat", key, err)
	}
	return s.copyOf(info), nil
}

// Delete removes the object and its chunks.
func (s *JetStreamStore) Delete(ctx context.Context, key string) error {
	if err := s.obs.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return s.err("delete", key, err)
	}
	return nil
}

// Check reads the bucket's status.
func (s *JetStreamStore) Check(ctx context.Context) error {
	if _, err := s.obs.Status(ctx); err != nil {
		return fmt.Errorf("archive: jetstream object store %q: %w", s.bucket, err)
	}
	return nil
}

func (s *JetStreamStore) err(op, key string, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("archive: jetstream %s %s/%s: %w", op, s.bucket, key, ErrNotFound)
	}
	return fmt.Errorf("archive: jetstream %s %s/%s: %w", op, s.bucket, key, err)
}

func (s *JetStreamStore) copyOf(info *jetstream.ObjectInfo) Copy {
	c := Copy{Store: KindJetStream, Bucket: s.bucket, Key: info.Name, Size: int64(info.Size)}
	if info.Headers != nil {
		c.ContentType = info.Headers.Get("Content-Type")
	}
	if d, err := jetstream.DecodeObjectDigest(info.Digest); err == nil && len(d) == 32 {
		c.SHA256 = hex.EncodeToString(d)
	}
	return c
}

// fillReader fills each Read's buffer completely unless the stream ends or
// fails first.
type fillReader struct{ r io.Reader }

func (f fillReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
