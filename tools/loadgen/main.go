// Command loadgen drives one HTTP or gRPC endpoint for the benchmarks and prints what each call took, as JSON.
//
// The benchmarks compare a service against the thing it wraps (Decide against raw OPA, say). A Python load
// generator on a 2-core machine spends as much CPU per call as the service under test and adds its own
// event-loop and GIL delays to every latency, so the comparison ends up measuring the client. This client is
// cheap enough to disappear from the figures, and the same one drives both sides of a comparison.
//
// Calls are read from a JSON file (see request) and sent round-robin. Two client models:
//   - open loop (-rate > 0): call i is due at start + i/rate; caller k sends calls k, k+C, k+2C, ... and each
//     latency counts from the due time, so a stall is charged to every call it delays (no coordinated omission);
//   - with -arrivals poisson, each caller instead sends at its own Poisson moments (rate/C per caller), as
//     independent users or SDK clients do; a call due while the caller's last one is out waits for it;
//   - closed loop (-rate 0): each caller sends its next call as soon as the last one is answered.
//
// Every call reports two latencies: from its due time (what a user waits) and from its send (what the server
// and the network took).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/status"
)

// request is one call: an HTTP request (URL set) or a gRPC unary call (GRPCMethod set, Message already
// serialised by the caller, so this program needs no generated code).
type request struct {
	Method     string            `json:"method"`
	URL        string            `json:"url"`
	Body       string            `json:"body"`
	Headers    map[string]string `json:"headers"`
	GRPCMethod string            `json:"grpc_method"`
	Message    []byte            `json:"message"` // base64 in the JSON file
}

type report struct {
	Calls       int            `json:"calls"`
	Concurrency int            `json:"concurrency"`
	Rate        float64        `json:"rate"`
	ElapsedS    float64        `json:"elapsed_s"`
	Arrivals    string         `json:"arrivals"`
	LatenciesMs []float64      `json:"latencies_ms"`
	SentMs      []float64      `json:"sent_latencies_ms"`
	Outcomes    map[string]int `json:"outcomes"`
	Matched     int            `json:"matched"`
	CPUSeconds  float64        `json:"cpu_s"`
}

// rawCodec passes the pre-serialised message through and hands back the answer's bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

type caller func(ctx context.Context, r *request) (outcome string, answer []byte)

func httpCaller(concurrency int, timeout time.Duration, tlsDir string) (caller, error) {
	transport := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency, DisableCompression: true}
	if tlsDir != "" {
		// https:// URLs present the workload certificate (an internal API that requires one); http:// ignores it.
		config, err := tlsConfig(tlsDir)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = config
	}
	client := &http.Client{Timeout: timeout, Transport: transport}
	return func(ctx context.Context, r *request) (string, []byte) {
		method := r.Method
		if method == "" {
			method = http.MethodPost
		}
		req, err := http.NewRequestWithContext(ctx, method, r.URL, bytes.NewBufferString(r.Body))
		if err != nil {
			return "error:request", nil
		}
		if r.Body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for name, value := range r.Headers {
			req.Header.Set(name, value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "error:transport", nil
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return "error:body", nil
		}
		return fmt.Sprintf("http:%d", resp.StatusCode), answer
	}, nil
}

// tlsConfig: the workload certificate in tlsDir (tls.crt, tls.key, ca.crt: the layout cert-manager and ig-infra
// write) as the client certificate, the server's chain and address verified against ca.crt.
func tlsConfig(tlsDir string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "tls.crt"), filepath.Join(tlsDir, "tls.key"))
	if err != nil {
		return nil, err
	}
	authority, err := os.ReadFile(filepath.Join(tlsDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(authority) {
		return nil, fmt.Errorf("%s: no certificate in ca.crt", tlsDir)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS13}, nil
}

// transportCredentials: gRPC over mTLS with tlsConfig; plaintext only when tlsDir is empty.
func transportCredentials(tlsDir string) (credentials.TransportCredentials, error) {
	if tlsDir == "" {
		return insecure.NewCredentials(), nil
	}
	config, err := tlsConfig(tlsDir)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(config), nil
}

// grpcCaller spreads the calls over conns connections, one after the other: a gateway opens one per worker
// thread (Envoy), and a service whose worker processes share the port with SO_REUSEPORT gets connections, not
// calls, spread by the kernel, so one connection would reach one process only.
func grpcCaller(target, tlsDir string, timeout time.Duration, conns int) (caller, func(), error) {
	transport, err := transportCredentials(tlsDir)
	if err != nil {
		return nil, nil, err
	}
	if conns < 1 {
		return nil, nil, fmt.Errorf("-conns: %d, need at least 1", conns)
	}
	opened := make([]*grpc.ClientConn, 0, conns)
	closeAll := func() {
		for _, conn := range opened {
			conn.Close()
		}
	}
	for i := 0; i < conns; i++ {
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(transport),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		// Connect now: a lazily connecting client would open its connections during the measured calls.
		conn.Connect()
		opened = append(opened, conn)
	}
	var next atomic.Uint64
	call := func(ctx context.Context, r *request) (string, []byte) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		conn := opened[next.Add(1)%uint64(len(opened))]
		in, out := r.Message, []byte{}
		if err := conn.Invoke(ctx, r.GRPCMethod, &in, &out); err != nil {
			return "grpc:" + status.Code(err).String(), nil
		}
		return "grpc:OK", out
	}
	return call, closeAll, nil
}

func main() {
	file := flag.String("requests", "", "JSON array of calls")
	target := flag.String("grpc-target", "", "host:port for gRPC calls")
	tlsDir := flag.String("tls-dir", "", "gRPC over mTLS, and https:// calls with a client certificate, as the workload certificate in this directory (tls.crt, tls.key, ca.crt)")
	count := flag.Int("count", 1000, "calls to measure")
	warmup := flag.Int("warmup", 200, "calls sent first and not measured")
	concurrency := flag.Int("concurrency", 32, "concurrent callers")
	rate := flag.Float64("rate", 0, "calls per second in all (open loop); 0 = closed loop")
	arrivals := flag.String("arrivals", "uniform", "open loop schedule: uniform (call i at i/rate) or poisson")
	duration := flag.Duration("duration", 0, "with -arrivals poisson: no call is due after this (count is then a bound)")
	match := flag.String("match", "", "count answers whose bytes contain this string")
	timeout := flag.Duration("timeout", 60*time.Second, "per-call timeout")
	out := flag.String("out", "", "write the JSON report here (default stdout)")
	conns := flag.Int("conns", 1, "gRPC connections; calls go to them in turn")
	flag.Parse()

	var calls []request
	data, err := os.ReadFile(*file)
	if err == nil {
		err = json.Unmarshal(data, &calls)
	}
	if err != nil || len(calls) == 0 {
		fail("-requests: need a non-empty JSON array of calls: %v", err)
	}
	call, err := httpCaller(*concurrency, *timeout, *tlsDir)
	if err != nil {
		fail("-tls-dir: %v", err)
	}
	if calls[0].GRPCMethod != "" {
		grpcCall, closeConn, err := grpcCaller(*target, *tlsDir, *timeout, *conns)
		if err != nil {
			fail("-grpc-target: %v", err)
		}
		defer closeConn()
		call = grpcCall
	}
	ctx := context.Background()
	if *arrivals != "uniform" && *arrivals != "poisson" {
		fail("-arrivals: %q is neither uniform nor poisson", *arrivals)
	}
	run(ctx, call, calls, *warmup, *concurrency, 0, "uniform", 0, "")
	result := run(ctx, call, calls, *count, *concurrency, *rate, *arrivals, *duration, *match)
	result.CPUSeconds = cpuSeconds()
	encoded, _ := json.Marshal(result)
	if *out == "" {
		os.Stdout.Write(append(encoded, '\n'))
	} else if err := os.WriteFile(*out, encoded, 0o644); err != nil {
		fail("-out: %v", err)
	}
}

func run(ctx context.Context, call caller, calls []request, count, concurrency int, rate float64, arrivals string,
	duration time.Duration, match string) report {
	latencies := make([]float64, count)
	sent := make([]float64, count)
	outcomes := make([]string, count)
	matched := make([]bool, count)
	needle := []byte(match)
	var wg sync.WaitGroup
	started := time.Now()
	for k := 0; k < concurrency; k++ {
		wg.Add(1)
		go func(first int) {
			defer wg.Done()
			moments := rand.New(rand.NewSource(int64(first) + 1))
			poissonDue := started
			for i := first; i < count; i += concurrency {
				due := time.Now()
				if rate > 0 {
					if arrivals == "poisson" {
						poissonDue = poissonDue.Add(time.Duration(moments.ExpFloat64() / (rate / float64(concurrency)) * float64(time.Second)))
						due = poissonDue
						if duration > 0 && due.Sub(started) > duration {
							return
						}
					} else {
						due = started.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					}
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
				}
				sentAt := time.Now()
				outcome, answer := call(ctx, &calls[i%len(calls)])
				latencies[i] = float64(time.Since(due).Microseconds()) / 1000
				sent[i] = float64(time.Since(sentAt).Microseconds()) / 1000
				outcomes[i] = outcome
				matched[i] = len(needle) > 0 && bytes.Contains(answer, needle)
			}
		}(k)
	}
	wg.Wait()
	elapsed := time.Since(started)
	if duration > 0 && arrivals == "poisson" && rate > 0 {
		elapsed = duration // the schedule's span; calls still out at its end are waited for and counted
	}
	result := report{Concurrency: concurrency, Rate: rate, Arrivals: arrivals, ElapsedS: elapsed.Seconds(),
		Outcomes: map[string]int{}}
	for i := range outcomes {
		if outcomes[i] == "" {
			continue // never due (-duration)
		}
		result.Calls++
		result.LatenciesMs = append(result.LatenciesMs, latencies[i])
		result.SentMs = append(result.SentMs, sent[i])
		result.Outcomes[outcomes[i]]++
		if matched[i] {
			result.Matched++
		}
	}
	return result
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}
