// An independent check of the witness's cosignatures: golang.org/x/mod/sumdb/note opens the note, with the log's
// key (Ed25519, 0x01) and the witnesses' keys as transparency-dev/formats/note reads cosignature/v1 (0x04).
//
//	cosignature verify <log vkey> <witness vkey>...   note on stdin; prints each verified signer's name
//	cosignature sign <name> <hex Ed25519 seed>        note on stdin; prints its body cosigned by that key alone
package main

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fail("usage: cosignature verify <log vkey> <witness vkey>... | sign <name> <hex seed>")
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("stdin: %v", err)
	}
	switch os.Args[1] {
	case "verify":
		logVerifier, err := note.NewVerifier(os.Args[2])
		if err != nil {
			fail("log key: %v", err)
		}
		verifiers := []note.Verifier{logVerifier}
		for _, vkey := range os.Args[3:] {
			v, err := fnote.NewVerifierForCosignatureV1(vkey)
			if err != nil {
				fail("witness key %s: %v", vkey, err)
			}
			verifiers = append(verifiers, v)
		}
		n, err := note.Open(input, note.VerifierList(verifiers...))
		if err != nil {
			fail("open: %v", err)
		}
		for _, sig := range n.Sigs {
			fmt.Println(sig.Name)
		}
	case "sign":
		seed, err := hex.DecodeString(os.Args[3])
		if err != nil || len(seed) != 32 {
			fail("seed: 32 bytes of hex")
		}
		skey := fmt.Sprintf("PRIVATE+KEY+%s+00000000+%s", os.Args[2],
			base64.StdEncoding.EncodeToString(append([]byte{0x04}, seed...)))
		signer, err := fnote.NewSignerForCosignatureV1(skey)
		if err != nil {
			fail("signer: %v", err)
		}
		body, _, found := strings.Cut(string(input), "\n\n")
		if !found {
			fail("note has no signature block")
		}
		signed, err := note.Sign(&note.Note{Text: body + "\n"}, signer)
		if err != nil {
			fail("sign: %v", err)
		}
		os.Stdout.Write(signed)
	default:
		fail("unknown command %s", os.Args[1])
	}
}
