// labkit's kubelet server for the embedded cluster: `kubectl exec` and `kubectl port-forward` on simulated pods.
//
// The API server sends exec, attach, port-forward, logs and metrics requests to a node's kubelet port. On the
// embedded cluster that port is this program's: it answers exec and port-forward itself, with the streaming code
// the kubelet uses (k8s.io/cri-streaming), and passes every other request (logs, metrics) on to KWOK's server.
//
//   - exec runs the command inside the container's sandbox: the argv prefix (bubblewrap) that labkit's kubelet
//     process (labkit/sim/kubelet.py, labkit/sim/sandbox.py) writes for each running container. No spec, no exec:
//     a command never runs on the host.
//   - port-forward connects to labkit's responder (labkit/sim/responder.py), which answers as the pod's image would.
//
// Written by labkit (labkit/data/kubelet-server/main.go); built by `labkit up` against the pinned modules.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

const (
	idleTimeout           = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
	specWait              = 10 * time.Second
)

// containerSpec is what labkit's kubelet process writes for one running container: how to enter its sandbox.
type containerSpec struct {
	Argv []string `json:"argv"` // the sandbox's argv; the exec'd command is appended
}

type server struct {
	runtimeDir    string // <runtime>/exec/<namespace>/<pod>/<container>.json
	responderFile string // holds the responder's host:port
}

func (s *server) spec(namespace, pod, container string) (*containerSpec, error) {
	for _, part := range []string{namespace, pod, container} {
		if part == "" || strings.ContainsAny(part, "/\\") || part == "." || part == ".." {
			return nil, fmt.Errorf("invalid name %q", part)
		}
	}
	data, err := os.ReadFile(filepath.Join(s.runtimeDir, "exec", namespace, pod, container+".json"))
	if err != nil {
		return nil, err
	}
	var spec containerSpec
	if err := json.Unmarshal(data, &spec); err != nil || len(spec.Argv) == 0 {
		return nil, fmt.Errorf("bad sandbox spec for %s/%s/%s", namespace, pod, container)
	}
	return &spec, nil
}

// waitSpec gives a container that has just started the moment its sandbox takes to be made (the status says
// running a little before labkit's kubelet process has written the spec).
func (s *server) waitSpec(namespace, pod, container string) (*containerSpec, error) {
	deadline := time.Now().Add(specWait)
	for {
		spec, err := s.spec(namespace, pod, container)
		if err == nil || time.Now().After(deadline) {
			return spec, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSocket gives a just-started container's attach socket the moment labkit's kubelet process takes to make it.
func (s *server) waitSocket(path string) bool {
	deadline := time.Now().Add(specWait)
	for {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func splitName(name string) (string, string) {
	namespace, pod, _ := strings.Cut(name, "/")
	return namespace, pod
}

// ExecInContainer runs cmd in the container's sandbox (remotecommand.Executor).
func (s *server) ExecInContainer(ctx context.Context, name, uid, container string, cmd []string, in io.Reader,
	out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	namespace, pod := splitName(name)
	spec, err := s.spec(namespace, pod, container)
	if err != nil {
		return fmt.Errorf("container not found (%q)", container)
	}
	argv := append([]string{}, spec.Argv...)
	if tty { // as container runtimes do for a terminal: TERM=xterm, set before bwrap's `--`
		for i, arg := range argv {
			if arg == "--" {
				argv = append(argv[:i:i], append([]string{"--setenv", "TERM", "xterm"}, argv[i:]...)...)
				break
			}
		}
	}
	argv = append(argv, cmd...)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = []string{}
	if tty {
		f, err := pty.Start(c)
		if err != nil {
			return err
		}
		defer f.Close()
		go func() {
			for size := range resize {
				_ = pty.Setsize(f, &pty.Winsize{Rows: size.Height, Cols: size.Width})
			}
		}()
		if in != nil {
			go func() { _, _ = io.Copy(f, in) }()
		}
		_, _ = io.Copy(out, f)
	} else {
		if in != nil {
			c.Stdin = in
		}
		c.Stdout, c.Stderr = out, errOut
		if err := c.Start(); err != nil {
			return err
		}
	}
	if err := c.Wait(); err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			return utilexec.CodeExitError{Err: err, Code: exitErr.ExitCode()}
		}
		return err
	}
	return nil
}

func (s *server) attachSocket(namespace, pod, container string) string {
	for _, part := range []string{namespace, pod, container} {
		if part == "" || strings.ContainsAny(part, "/\\") || part == "." || part == ".." {
			return "/nonexistent"
		}
	}
	return filepath.Join(s.runtimeDir, "attach", namespace, pod, container+".sock")
}

// AttachContainer joins the container's stdin and output, which labkit's kubelet process relays from its process
// (remotecommand.Attacher); a terminal's size changes are not passed on.
func (s *server) AttachContainer(ctx context.Context, name, uid, container string, in io.Reader,
	out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	namespace, pod := splitName(name)
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "unix", s.attachSocket(namespace, pod, container))
	if err != nil {
		return fmt.Errorf("container not found (%q)", container)
	}
	defer conn.Close()
	go func() {
		for range resize {
		}
	}()
	if in != nil {
		go func() {
			_, _ = io.Copy(conn, in)
			if uc, ok := conn.(*net.UnixConn); ok {
				_ = uc.CloseWrite() // the attached stdin ended (stdinOnce: the container's too)
			}
		}()
	}
	if out != nil {
		_, _ = io.Copy(out, conn)
	} else {
		_, _ = io.Copy(io.Discard, conn)
	}
	return nil
}

// PortForward connects the stream to the responder, which answers for the pod's port (portforward.PortForwarder).
func (s *server) PortForward(ctx context.Context, name, uid string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	namespace, pod := splitName(name)
	addr, err := os.ReadFile(s.responderFile)
	if err != nil {
		return fmt.Errorf("labkit's responder is not running: %w", err)
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", strings.TrimSpace(string(addr)))
	if err != nil {
		return fmt.Errorf("labkit's responder: %w", err)
	}
	defer conn.Close()
	hello, _ := json.Marshal(map[string]any{"namespace": namespace, "pod": pod, "uid": uid, "port": port})
	if _, err := conn.Write(append(hello, '\n')); err != nil {
		return err
	}
	reader := bufio.NewReader(conn)
	answer, err := reader.ReadString('\n')
	if err != nil {
		return fmt.Errorf("labkit's responder: %w", err)
	}
	if answer = strings.TrimSpace(answer); answer != "OK" {
		return errors.New(answer)
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, reader); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// route: /exec/{namespace}/{pod}/{container}, /exec/{namespace}/{pod}/{uid}/{container}, /portForward/{ns}/{pod}[/{uid}]
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request, upstream http.Handler) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case (parts[0] == "exec" || parts[0] == "run") && (len(parts) == 4 || len(parts) == 5):
		namespace, pod, container := parts[1], parts[2], parts[len(parts)-1]
		uid := ""
		if len(parts) == 5 {
			uid = parts[3]
		}
		if _, err := s.waitSpec(namespace, pod, container); err != nil {
			http.Error(w, fmt.Sprintf("container not found (%q)", container), http.StatusNotFound)
			return
		}
		opts, err := remotecommand.NewOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		remotecommand.ServeExec(w, r, s, namespace+"/"+pod, uid, container, r.URL.Query()["command"], opts,
			idleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
	case parts[0] == "portForward" && (len(parts) == 3 || len(parts) == 4):
		uid := ""
		if len(parts) == 4 {
			uid = parts[3]
		}
		opts, err := portforward.NewV4Options(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		portforward.ServePortForward(w, r, s, parts[1]+"/"+parts[2], uid, opts, idleTimeout,
			streamCreationTimeout, portforward.SupportedProtocols)
	case parts[0] == "attach" && (len(parts) == 4 || len(parts) == 5):
		namespace, pod, container := parts[1], parts[2], parts[len(parts)-1]
		uid := ""
		if len(parts) == 5 {
			uid = parts[3]
		}
		if !s.waitSocket(s.attachSocket(namespace, pod, container)) {
			if _, err := s.spec(namespace, pod, container); err != nil {
				// It ended before kubectl came to attach (kubectl run -i of a short command): the kubelet's words,
				// and kubectl falls back to the container's log.
				http.Error(w, fmt.Sprintf("container not found (%q)", container), http.StatusNotFound)
				return
			}
			http.Error(w, fmt.Sprintf("kubectl attach reaches a container that runs with stdin (kubectl run -i, "+
				"stdin: true) and runs for real on labkit's embedded cluster; %q does not: use kubectl logs -f, or "+
				"kubectl exec -it POD -- sh", container), http.StatusBadRequest)
			return
		}
		opts, err := remotecommand.NewOptions(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		remotecommand.ServeAttach(w, r, s, namespace+"/"+pod, uid, container, opts, idleTimeout,
			streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
	default:
		upstream.ServeHTTP(w, r)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:10250", "address to serve the kubelet API on (loopback only)")
	upstreamFile := flag.String("upstream-file", "", "file holding KWOK's server address (host:port)")
	certFile := flag.String("tls-cert-file", "", "serving certificate")
	keyFile := flag.String("tls-private-key-file", "", "serving key")
	runtimeDir := flag.String("runtime", "", "labkit's runtime folder (sandbox specs, responder address)")
	flag.Parse()
	host, _, err := net.SplitHostPort(*listen)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		log.Fatalf("--listen must be a loopback address, not %q", *listen)
	}
	s := &server{runtimeDir: *runtimeDir, responderFile: filepath.Join(*runtimeDir, "responder")}

	var (
		mu    sync.Mutex
		proxy *httputil.ReverseProxy
		addr  string
	)
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile(*upstreamFile)
		if err != nil {
			http.Error(w, "KWOK's server is not running yet", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		if current := strings.TrimSpace(string(data)); proxy == nil || current != addr {
			addr = current
			proxy = httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "https", Host: addr})
			proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // loopback, our own server
			proxy.FlushInterval = -1                                                                  // logs -f
		}
		p := proxy
		mu.Unlock()
		p.ServeHTTP(w, r)
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.ServeHTTP(w, r, upstream) })
	srv := &http.Server{Addr: *listen, Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	// The previous server (a restarted kubelet process's) may hold the port for a moment yet.
	var ln net.Listener
	for attempt := 0; ; attempt++ {
		if ln, err = net.Listen("tcp", *listen); err == nil || attempt == 60 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("labkit kubelet server on %s", *listen)
	if *certFile == "" {
		log.Fatal(srv.Serve(ln))
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	// HTTPS for the API server, plain HTTP for Prometheus' kubelet job: one port, as KWOK's server serves both.
	log.Fatal(srv.Serve(newEitherListener(ln, &tls.Config{Certificates: []tls.Certificate{cert},
		NextProtos: []string{"http/1.1"}})))
}

// eitherListener hands out each connection as TLS or plain HTTP, by its first byte (0x16: a TLS handshake).
type eitherListener struct {
	net.Listener
	conns chan net.Conn
	errs  chan error
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func newEitherListener(inner net.Listener, cfg *tls.Config) *eitherListener {
	l := &eitherListener{Listener: inner, conns: make(chan net.Conn), errs: make(chan error, 1)}
	go func() {
		for {
			c, err := inner.Accept()
			if err != nil {
				l.errs <- err
				return
			}
			go func() {
				r := bufio.NewReader(c)
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				first, err := r.Peek(1)
				_ = c.SetReadDeadline(time.Time{})
				if err != nil {
					_ = c.Close()
					return
				}
				pc := &peekedConn{Conn: c, r: r}
				if first[0] == 0x16 {
					l.conns <- tls.Server(pc, cfg)
				} else {
					l.conns <- pc
				}
			}()
		}
	}()
	return l
}

func (l *eitherListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	}
}
