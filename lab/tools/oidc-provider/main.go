// A test-only OpenID Provider for the lab's OIDC drill: zitadel/oidc's example
// provider (its op.Provider setup, in-memory storage and login form, imported
// unchanged from github.com/zitadel/oidc/v3/example/server) with the issuer,
// listener, TLS, client and users given on the command line.
//
// Why not upstream's example main: it hard-codes the issuer as
// http://localhost:<PORT>/. headscale's OIDC client (go-oidc) requires the
// discovery document's issuer to equal the configured one exactly, so that
// issuer works only for a headscale and a browser on the provider's own host,
// over plain http, which meshfleet's check refuses (an issuer must be https).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// Stamped at build time with the zitadel/oidc module version.
var version = "dev"

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	issuer := flag.String("issuer", "", "the issuer URL, e.g. https://203.0.113.1:9443/ (served as is in the discovery document)")
	listen := flag.String("listen", ":9443", "address to listen on")
	certFile := flag.String("tls-cert", "", "PEM certificate for the issuer's host")
	keyFile := flag.String("tls-key", "", "PEM private key of -tls-cert")
	clientID := flag.String("client-id", "headscale", "the one client registered")
	secretFile := flag.String("client-secret-file", "", "file holding that client's secret")
	redirectURI := flag.String("redirect-uri", "", "the client's redirect URI, e.g. https://hs.example/oidc/callback")
	usersFile := flag.String("users-file", "", "JSON users, as upstream's USERS_FILE: {id: {ID, Username, Password, Email, EmailVerified, ...}}")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := run(logger, *issuer, *listen, *certFile, *keyFile, *clientID, *secretFile, *redirectURI, *usersFile); err != nil {
		logger.Error("oidc-provider", "error", err)
		os.Exit(1)
	}
}

func run(logger *slog.Logger, issuer, listen, certFile, keyFile, clientID, secretFile, redirectURI, usersFile string) error {
	for name, v := range map[string]string{"-issuer": issuer, "-tls-cert": certFile, "-tls-key": keyFile, "-client-secret-file": secretFile, "-redirect-uri": redirectURI, "-users-file": usersFile} {
		if v == "" {
			return fmt.Errorf("%s is required", name)
		}
	}
	if !strings.HasPrefix(issuer, "https://") {
		return fmt.Errorf("-issuer %q: expected an https:// URL", issuer)
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(secret)) == "" {
		return errors.New("-client-secret-file is empty")
	}
	// A confidential web client (client_secret_basic, code flow, PKCE accepted):
	// what headscale is to a real provider.
	storage.RegisterClients(storage.WebClient(clientID, strings.TrimSpace(string(secret)), redirectURI))
	users, err := storage.StoreFromFile(usersFile)
	if err != nil {
		return fmt.Errorf("-users-file: %w", err)
	}
	router := exampleop.SetupServer(issuer, storage.NewStorage(users), logger, false)
	server := &http.Server{Addr: listen, Handler: router}
	logger.Info("listening", "issuer", issuer, "addr", listen, "version", version)
	return server.ListenAndServeTLS(certFile, keyFile)
}
