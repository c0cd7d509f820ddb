// Command tlog-verify checks a C2SP tlog-tiles log over HTTP with golang.org/x/mod's sumdb/note and sumdb/tlog,
// an implementation independent of the evidence service's own: the checkpoint's signature, every tile the proofs
// touch (authenticated against the checkpoint's root by tlog.TileHashReader), an inclusion proof and the entry
// bundle of each leaf asked for, and a consistency proof from an earlier checkpoint.
//
// x/mod names tiles tile/8/<L>/<N> and tile/8/data/<N>; C2SP drops the height and says "entries": the adapter
// below rewrites the path, nothing else. It prints what it verified as JSON; any failure exits non-zero.
package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

type tiles struct{ url string }

func (tiles) Height() int { return height }

func (r tiles) ReadTiles(ts []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(ts))
	for i, t := range ts {
		data, err := get(r.url + "/" + c2spPath(t))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (tiles) SaveTiles([]tlog.Tile, [][]byte) {}

// c2spPath maps x/mod's tile/8/L/N[.p/W] and tile/8/data/N[.p/W] to C2SP's tile/L/N[.p/W] and tile/entries/N[.p/W].
func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", height))
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return body, nil
}

// openCheckpoint verifies a signed note with the log's key and parses its C2SP checkpoint body (origin, size, root;
// x/mod's tlog.ParseTree expects a go.sum header line instead of an origin, so the body is parsed here).
func openCheckpoint(msg []byte, verifiers note.Verifiers, origin string) (tlog.Tree, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.SplitN(n.Text, "\n", 4)
	if len(lines) < 4 || lines[0] != origin {
		return tlog.Tree{}, fmt.Errorf("checkpoint origin %q, want %q", lines[0], origin)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return tlog.Tree{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return tlog.Tree{}, fmt.Errorf("checkpoint root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return tlog.Tree{N: size, Hash: root}, nil
}

type entry struct {
	Index     int64  `json:"index"`
	EntryHash string `json:"entry_hash"`
}

type result struct {
	Size           int64   `json:"size"`
	Root           string  `json:"root"`
	Entries        []entry `json:"entries"`
	ConsistentFrom int64   `json:"consistent_from,omitempty"`
}

func run() error {
	url := flag.String("url", "", "the log's prefix URL")
	vkey := flag.String("vkey", "", "the log's note verifier key (name+hash+base64)")
	origin := flag.String("origin", "", "the checkpoint origin line")
	leaves := flag.String("leaves", "", "comma-separated leaf indexes to prove (0-based)")
	old := flag.String("old-checkpoint", "", "file with an earlier signed checkpoint to prove consistency from")
	flag.Parse()
	verifier, err := note.NewVerifier(*vkey)
	if err != nil {
		return fmt.Errorf("verifier key: %w", err)
	}
	verifiers := note.VerifierList(verifier)
	msg, err := get(*url + "/checkpoint")
	if err != nil {
		return err
	}
	tree, err := openCheckpoint(msg, verifiers, *origin)
	if err != nil {
		return err
	}
	reader := tlog.TileHashReader(tree, tiles{*url})
	if root, err := tlog.TreeHash(tree.N, reader); err != nil || root != tree.Hash {
		return fmt.Errorf("tree hash from tiles: %v (%v != %v)", err, root, tree.Hash)
	}
	out := result{Size: tree.N, Root: hex.EncodeToString(tree.Hash[:]), Entries: []entry{}}
	for _, field := range strings.Split(*leaves, ",") {
		if field == "" {
			continue
		}
		index, err := strconv.ParseInt(field, 10, 64)
		if err != nil || index < 0 || index >= tree.N {
			return fmt.Errorf("leaf %q outside tree of size %d", field, tree.N)
		}
		data, err := entryData(*url, tree.N, index)
		if err != nil {
			return err
		}
		proof, err := tlog.ProveRecord(tree.N, index, reader)
		if err != nil {
			return fmt.Errorf("prove leaf %d: %w", index, err)
		}
		if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, tlog.RecordHash(data)); err != nil {
			return fmt.Errorf("leaf %d: %w", index, err)
		}
		out.Entries = append(out.Entries, entry{Index: index, EntryHash: hex.EncodeToString(data)})
	}
	if *old != "" {
		oldMsg, err := os.ReadFile(*old)
		if err != nil {
			return err
		}
		oldTree, err := openCheckpoint(oldMsg, verifiers, *origin)
		if err != nil {
			return fmt.Errorf("old %w", err)
		}
		proof, err := tlog.ProveTree(tree.N, oldTree.N, reader)
		if err != nil {
			return fmt.Errorf("prove consistency: %w", err)
		}
		if err := tlog.CheckTree(proof, tree.N, tree.Hash, oldTree.N, oldTree.Hash); err != nil {
			return fmt.Errorf("consistency %d -> %d: %w", oldTree.N, tree.N, err)
		}
		out.ConsistentFrom = oldTree.N
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// entryData reads leaf index's entry from its entry bundle (uint16 big-endian length-prefixed entries).
func entryData(url string, size, index int64) ([]byte, error) {
	t := tlog.TileForIndex(height, tlog.StoredHashIndex(0, index))
	t.L = -1
	if end := (t.N + 1) << height; end > size {
		t.W = int(size - t.N<<height)
	} else {
		t.W = 1 << height
	}
	bundle, err := get(url + "/" + c2spPath(t))
	if err != nil {
		return nil, err
	}
	for i := int64(0); ; i++ {
		if len(bundle) < 2 {
			return nil, fmt.Errorf("entry bundle %s ends before entry %d", c2spPath(t), index)
		}
		n := int(binary.BigEndian.Uint16(bundle))
		if len(bundle) < 2+n {
			return nil, fmt.Errorf("entry bundle %s: truncated entry", c2spPath(t))
		}
		if t.N<<height+i == index {
			return bundle[2 : 2+n], nil
		}
		bundle = bundle[2+n:]
	}
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "tlog-verify:", err)
		os.Exit(1)
	}
}
