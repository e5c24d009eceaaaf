package otlpreceiver

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// TracesPath is where OTLP/HTTP exporters send traces.
const TracesPath = "/v1/traces"

// bodyTimeout bounds the reading of one request's body.
const bodyTimeout = 30 * time.Second

// Caller is who sent a request, as the transport's authentication found it.
type Caller struct {
	OK    bool   // authenticated
	Agent string // the agent a scoped credential may send for; empty: any
	// Refused, when set, says why an authenticated caller may not send spans (a
	// reader's token): answered as forbidden.
	Refused string
}

// Authenticate finds the caller of a request from its headers (HTTP) or metadata
// (gRPC: the same names, lower-cased).
type Authenticate func(header func(name string) string, verifiedClientCert bool) Caller

const (
	ctProto = "application/x-protobuf"
	ctJSON  = "application/json"
)

// Handler serves OTLP/HTTP on TracesPath: protobuf or JSON bodies, gzip or not, answered
// in the request's encoding, with the partial success of the OTLP specification.
func (r *Receiver) Handler(auth Authenticate) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(TracesPath, func(w http.ResponseWriter, req *http.Request) {
		ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
		if ct != ctJSON {
			ct = ctProto // errors before the body is known are answered in protobuf
		}
		caller := auth(req.Header.Get, req.TLS != nil && len(req.TLS.VerifiedChains) > 0)
		switch {
		case !caller.OK:
			w.Header().Set("WWW-Authenticate", `Bearer realm="troy"`)
			r.refuse(w, ct, http.StatusUnauthorized, codes.Unauthenticated, "a valid bearer token (or client certificate) is required")
			return
		case caller.Refused != "":
			r.refuse(w, ct, http.StatusForbidden, codes.PermissionDenied, caller.Refused)
			return
		case req.Method != http.MethodPost:
			w.Header().Set("Allow", http.MethodPost)
			r.refuse(w, ct, http.StatusMethodNotAllowed, codes.Unimplemented, "OTLP traces are POSTed")
			return
		}
		if got, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); got != ctProto && got != ctJSON {
			r.refuse(w, ct, http.StatusUnsupportedMediaType, codes.InvalidArgument, fmt.Sprintf("Content-Type %q: expected %s or %s", req.Header.Get("Content-Type"), ctProto, ctJSON))
			return
		}
		body, status, err := r.readBody(w, req)
		if err != nil {
			r.refuse(w, ct, status, codes.InvalidArgument, err.Error())
			return
		}
		er := ptraceotlp.NewExportRequest()
		if ct == ctJSON {
			err = er.UnmarshalJSON(body)
		} else {
			err = er.UnmarshalProto(body)
		}
		if err != nil {
			r.refuse(w, ct, http.StatusBadRequest, codes.InvalidArgument, "the body is not an OTLP trace export: "+err.Error())
			return
		}
		resp, err := r.export(er, caller.Agent)
		if errors.Is(err, errBusy) {
			w.Header().Set("Retry-After", "1")
			r.refuse(w, ct, http.StatusServiceUnavailable, codes.Unavailable, err.Error())
			return
		}
		var out []byte
		if ct == ctJSON {
			out, err = resp.MarshalJSON()
		} else {
			out, err = resp.MarshalProto()
		}
		if err != nil {
			r.refuse(w, ct, http.StatusInternalServerError, codes.Internal, err.Error())
			return
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
	})
	return mux
}

// readBody reads a body within MaxBody (after gzip) and its deadline.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) ([]byte, int, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	defer rc.SetReadDeadline(time.Time{})
	var src io.Reader = http.MaxBytesReader(w, req.Body, r.cfg.MaxBody)
	switch enc := strings.ToLower(strings.TrimSpace(req.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("the gzip body: %w", err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q: expected gzip or none", enc)
	}
	// A gzip bomb stops at the limit too: what is read after decompression is bounded.
	body, err := io.ReadAll(io.LimitReader(src, r.cfg.MaxBody+1))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig) || int64(len(body)) > r.cfg.MaxBody:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the body is over %d bytes", r.cfg.MaxBody)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("read the body: %w", err)
	}
	return body, 0, nil
}

// export takes a decoded request and makes its answer.
func (r *Receiver) export(er ptraceotlp.ExportRequest, agent string) (ptraceotlp.ExportResponse, error) {
	resp := ptraceotlp.NewExportResponse()
	rejected, why, err := r.Export(er.Traces(), agent)
	if err != nil {
		return resp, err
	}
	if rejected > 0 {
		resp.PartialSuccess().SetRejectedSpans(int64(rejected))
		if why != nil {
			resp.PartialSuccess().SetErrorMessage(why.Error())
		}
	}
	return resp, nil
}

// refuse answers a request with a google.rpc.Status, as OTLP/HTTP asks.
func (r *Receiver) refuse(w http.ResponseWriter, ct string, httpStatus int, code codes.Code, msg string) {
	if httpStatus == http.StatusUnauthorized || httpStatus == http.StatusForbidden || httpStatus >= 500 || httpStatus == http.StatusRequestEntityTooLarge {
		r.mu.Lock()
		r.counts.RefusedExports++
		r.mu.Unlock()
	}
	st := &spb.Status{Code: int32(code), Message: "troy: " + msg}
	var b []byte
	if ct == ctJSON {
		b, _ = protojson.Marshal(st)
	} else {
		b, _ = proto.Marshal(st)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(httpStatus)
	_, _ = io.Copy(w, bytes.NewReader(b))
}

// GRPC serves OTLP/gRPC's trace service on s.
func (r *Receiver) GRPC(s *grpc.Server, auth Authenticate) {
	ptraceotlp.RegisterGRPCServer(s, &grpcServer{r: r, auth: auth})
}

type grpcServer struct {
	ptraceotlp.UnimplementedGRPCServer
	r    *Receiver
	auth Authenticate
}

func (g *grpcServer) Export(ctx context.Context, er ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	caller := g.auth(mdHeader(md), verifiedPeer(ctx))
	switch {
	case !caller.OK:
		return ptraceotlp.NewExportResponse(), status.Error(codes.Unauthenticated, "troy: a valid bearer token (or client certificate) is required")
	case caller.Refused != "":
		return ptraceotlp.NewExportResponse(), status.Error(codes.PermissionDenied, "troy: "+caller.Refused)
	}
	resp, err := g.r.export(er, caller.Agent)
	if errors.Is(err, errBusy) {
		return resp, status.Error(codes.Unavailable, "troy: "+err.Error())
	}
	return resp, err
}

// mdHeader reads gRPC metadata as headers: by name, lower-cased.
func mdHeader(md metadata.MD) func(string) string {
	return func(name string) string {
		if v := md.Get(strings.ToLower(name)); len(v) > 0 {
			return v[0]
		}
		return ""
	}
}

// verifiedPeer says the gRPC peer presented a client certificate that was verified.
func verifiedPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.VerifiedChains) > 0
}

// Listeners are where Start serves; an empty address serves nothing.
type Listeners struct {
	HTTP, GRPC string
	TLS        *tls.Config // nil: plain text
}

// Start serves OTLP/HTTP and OTLP/gRPC on the addresses given, until stop is called. It
// returns the addresses bound (a port 0 chosen).
func (r *Receiver) Start(l Listeners, auth Authenticate) (httpAddr, grpcAddr string, stop func(), err error) {
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	if l.HTTP != "" {
		ln, err := net.Listen("tcp", l.HTTP)
		if err != nil {
			return "", "", nil, fmt.Errorf("--otlp: %w", err)
		}
		httpAddr = ln.Addr().String()
		hs := &http.Server{
			Handler: r.Handler(auth), TLSConfig: l.TLS, ErrorLog: slog.NewLogLogger(r.log.Handler(), slog.LevelWarn),
			ReadHeaderTimeout: 5 * time.Second, WriteTimeout: bodyTimeout + 15*time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 64 << 10,
		}
		go func() {
			var err error
			if l.TLS != nil {
				err = hs.ServeTLS(ln, "", "")
			} else {
				err = hs.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				r.log.Error("otlp http", "err", err)
			}
		}()
		stops = append(stops, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(ctx)
		})
	}
	if l.GRPC != "" {
		ln, err := net.Listen("tcp", l.GRPC)
		if err != nil {
			stopAll()
			return "", "", nil, fmt.Errorf("--otlp-grpc: %w", err)
		}
		grpcAddr = ln.Addr().String()
		// Callers are checked on their metadata before a message is read: one without a
		// token costs a header, not a 16 MiB body. A client certificate cannot be seen
		// there, so with a client CA gRPC asks every client for one at the handshake.
		certs := l.TLS != nil && l.TLS.ClientCAs != nil
		opts := []grpc.ServerOption{grpc.MaxRecvMsgSize(int(r.cfg.MaxBody)), grpc.ConnectionTimeout(5 * time.Second),
			grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
				caller := auth(mdHeader(info.Header), certs)
				switch {
				case !caller.OK:
					return ctx, status.Error(codes.Unauthenticated, "troy: a valid bearer token (or client certificate) is required")
				case caller.Refused != "":
					return ctx, status.Error(codes.PermissionDenied, "troy: "+caller.Refused)
				}
				return ctx, nil
			})}
		if l.TLS != nil {
			tc := l.TLS
			if certs {
				tc = tc.Clone()
				tc.ClientAuth = tls.RequireAndVerifyClientCert
			}
			opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
		}
		gs := grpc.NewServer(opts...)
		r.GRPC(gs, auth)
		go func() {
			if err := gs.Serve(ln); err != nil {
				r.log.Error("otlp grpc", "err", err)
			}
		}()
		stops = append(stops, func() {
			done := make(chan struct{})
			go func() { gs.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				gs.Stop()
			}
		})
	}
	return httpAddr, grpcAddr, stopAll, nil
}
