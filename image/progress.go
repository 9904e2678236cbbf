package image

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/go-units"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Progress shows how the layers of a pull or push move, one line per layer:
// live bars with bytes, speed and an estimate on a terminal, a plain line
// per finished layer otherwise (a log or a CI job reads those), nothing
// when quiet. It is safe for layers moving in parallel.
type Progress struct {
	w     io.Writer
	bars  *mpb.Progress // nil unless w is a terminal
	mu    sync.Mutex    // orders plain lines and guards tracks
	quiet bool
	// tracks are the layers not yet finished; Wait abandons them.
	tracks map[*track]bool
}

// NewProgress shows progress on w; quiet shows none.
func NewProgress(w io.Writer, quiet bool) *Progress {
	p := &Progress{w: w, quiet: quiet, tracks: map[*track]bool{}}
	// A terminal of no size (a pseudo-terminal nobody sized) would show
	// no rows of bars at all: plain lines then.
	if f, ok := w.(*os.File); ok && !quiet && hasSize(f) {
		p.bars = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return p
}

func hasSize(f *os.File) bool {
	if !term.IsTerminal(int(f.Fd())) {
		return false
	}
	width, height, err := term.GetSize(int(f.Fd()))
	return err == nil && width > 0 && height > 0
}

// Track returns r, counting what is read through it as the layer name of
// size bytes (size ≤ 0 when unknown). Reading to io.EOF finishes the
// layer's line; another error marks it failed.
func (p *Progress) Track(name string, size int64, r io.Reader) io.Reader {
	if p.quiet {
		return r
	}
	t := &track{p: p, name: name, size: size, r: r, start: time.Now()}
	t.last = t.start
	if p.bars != nil {
		total := max(size, 0)
		t.bar = p.bars.AddBar(total,
			mpb.PrependDecorators(
				decor.Name(name, decor.WCSyncSpaceR),
				decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.OnAbort(decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncWidth), "done"), ""),
				decor.OnAbort(decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), " % .1f", 30, decor.WCSyncSpace), ""), ""),
			),
			mpb.BarFillerOnAbort("failed"),
		)
	}
	p.mu.Lock()
	p.tracks[t] = true
	p.mu.Unlock()
	return t
}

// Wait returns once every line is final: a layer whose reading stopped
// short of its end, as when another layer failed and the transfer was
// given up, is shown as abandoned rather than waited for.
func (p *Progress) Wait() {
	if p.quiet {
		return
	}
	p.mu.Lock()
	open := make([]*track, 0, len(p.tracks))
	for t := range p.tracks {
		open = append(open, t)
	}
	p.mu.Unlock()
	for _, t := range open {
		t.finish(errAbandoned)
	}
	if p.bars != nil {
		p.bars.Wait()
	}
}

var errAbandoned = fmt.Errorf("abandoned")

// track is one layer's reader.
type track struct {
	p           *Progress
	name        string
	size        int64
	n           atomic.Int64
	r           io.Reader
	bar         *mpb.Bar
	start, last time.Time
	once        sync.Once
}

func (t *track) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if n > 0 {
		t.n.Add(int64(n))
		if t.bar != nil {
			now := time.Now()
			t.bar.EwmaIncrBy(n, now.Sub(t.last))
			t.last = now
		}
	}
	if err != nil {
		t.finish(err)
	}
	return n, err
}

// finish makes the layer's line final, once: complete at io.EOF, failed
// otherwise.
func (t *track) finish(err error) {
	t.once.Do(func() {
		p := t.p
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.tracks, t)
		if t.bar != nil {
			if err == io.EOF {
				t.bar.SetTotal(-1, true)
			} else {
				t.bar.Abort(false)
			}
			return
		}
		took := time.Since(t.start).Round(time.Millisecond)
		size := units.BytesSize(float64(t.n.Load()))
		switch err {
		case io.EOF:
			fmt.Fprintf(p.w, "%s: done, %s in %s\n", t.name, size, took)
		case errAbandoned:
			fmt.Fprintf(p.w, "%s: abandoned after %s\n", t.name, size)
		default:
			fmt.Fprintf(p.w, "%s: failed after %s\n", t.name, size)
		}
	})
}
