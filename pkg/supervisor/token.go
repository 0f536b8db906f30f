// Package supervisor is how nodes join a skiff cluster: the token format,
// the join API the server serves on the apiserver's own port (behind its
// authentication, authorization and priority-and-fairness filters), and the
// client half an agent runs.
//
// A token is k3s's: K10<sha256 of the server CA>::<credential>. The hash
// pins the server: an agent refuses a server whose CA does not match before
// it sends the credential. The credential is an upstream bootstrap token
// (<id>.<secret>, a Secret in kube-system that the apiserver's bootstrap
// token authenticator checks); any other passphrase (k3s's node:<password>,
// a --token given by the user) is mapped to one bootstrap token, the same
// on every machine.
package supervisor

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strings"

	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// tokenPrefix starts a token that carries the server CA's hash (k3s's
// "K10" format, version 1 of it).
const tokenPrefix = "K10"

// Token is a parsed join token.
type Token struct {
	// CAHash is the hex sha256 of the server CA certificate (PEM), or ""
	// when the token does not pin the CA.
	CAHash string
	// ID and Secret are the bootstrap token the apiserver authenticates.
	ID, Secret string
}

var (
	caHashPattern         = regexp.MustCompile(`^[0-9a-f]{64}$`)
	bootstrapTokenPattern = regexp.MustCompile(bootstrapapi.BootstrapTokenPattern)
)

// ParseToken reads a full token (K10<hash>::<credential>) or a bare
// credential.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, errors.New("the token is empty")
	}
	var t Token
	credential := s
	if rest, ok := strings.CutPrefix(s, tokenPrefix); ok {
		hash, cred, found := strings.Cut(rest, "::")
		if !found || !caHashPattern.MatchString(hash) {
			return Token{}, errors.New("the token starts with K10 but is not K10<64 hex digits>::<credential>; copy it whole from the server's <data-dir>/server/token")
		}
		t.CAHash, credential = hash, cred
	}
	if credential == "" {
		return Token{}, errors.New("the token has no credential after ::")
	}
	t.ID, t.Secret = bootstrapCredential(credential)
	return t, nil
}

// String is the full token, with the CA hash when it has one.
func (t Token) String() string {
	cred := bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret)
	if t.CAHash == "" {
		return cred
	}
	return tokenPrefix + t.CAHash + "::" + cred
}

// Bearer is what the agent sends in its Authorization header.
func (t Token) Bearer() string { return bootstraputil.TokenFromIDAndSecret(t.ID, t.Secret) }

// bootstrapCredential maps a credential to a bootstrap token: one already
// in that form is itself; any other string is hashed into one, so that a
// passphrase given to the server and to its agents names the same token.
func bootstrapCredential(credential string) (id, secret string) {
	if m := bootstrapTokenPattern.FindStringSubmatch(credential); m != nil {
		return m[1], m[2]
	}
	sum := sha256.Sum256([]byte("skiff join token\x00" + credential))
	// base 36 digits, as bootstrap tokens use [a-z0-9].
	digits := new(big.Int).SetBytes(sum[:]).Text(36)
	digits = strings.Repeat("0", 22) + digits
	digits = digits[len(digits)-22:]
	return digits[:bootstrapapi.BootstrapTokenIDBytes], digits[bootstrapapi.BootstrapTokenIDBytes:]
}

// NewToken makes a random token for the CA.
func NewToken(caHash string) (Token, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return Token{}, err
	}
	id, secret := bootstrapCredential(s)
	return Token{CAHash: caHash, ID: id, Secret: secret}, nil
}

// CAHash is the hash a token pins: the hex sha256 of the CA certificate
// in PEM, as k3s hashes its CA bundle.
func CAHash(ca *x509.Certificate) string {
	sum := sha256.Sum256(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	return hex.EncodeToString(sum[:])
}

// checkPinned finds, among the certificates a server presented, a CA whose
// hash is want.
func checkPinned(chain []*x509.Certificate, want string) (*x509.Certificate, error) {
	for _, c := range chain {
		if c.IsCA && CAHash(c) == want {
			return c, nil
		}
	}
	return nil, fmt.Errorf("the server's CA does not match the token (the token pins CA %s…): is this the right server, and the token from its <data-dir>/server/token?", want[:12])
}
