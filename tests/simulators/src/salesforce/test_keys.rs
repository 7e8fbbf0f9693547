//! A throwaway RSA key pair and self-signed certificate for the JWT bearer flow in tests and the
//! demo. The simulator trusts [`CERTIFICATE_PEM`] by default; sign assertions with
//! [`PRIVATE_KEY_PEM`]. Never use them for anything real: the private key is public.

/// PKCS#8 private key (RSA 2048) matching [`CERTIFICATE_PEM`].
pub const PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDGdLrPLYlsKK4F\n\
6K9/D0OkxhPNdeRpGsgMEqyDrOxnQohK6ZX4VXFALAz/58We1EGQtFR+bT6vLGzq\n\
GrgMDosyjgo0EHeoeNAZt8FHEDsyXoiETDsZKSCwMBuAqiVdp/oHjZPZBosOz7++\n\
miQVmOrdOD/I7aDi03l8LgAWvvlrm4dU//PY7tCTHWRFBUSMtjV5VTAw1rt9VdzW\n\
FsMsm0lXF2JI74CL3NnDp6SglROb+aGHi7DizZaIzv058+WVRCmS5sp/MYKthbe4\n\
Ui3WOiUbFFapW8+OeowTsVdjm7TemWXZ2CsOUi7NBUz4ULVd90rPcl4cTGEbYDJo\n\
HhkUNrShAgMBAAECggEACEOKF+B0jX1wKazTyf2vumfJIVAcb8f+ton8hwsnWPFr\n\
TXtGlG2yZpKvA+T51LBP/p+TuSQBbTfzXRg5u77LSxKhGCPrZ6eIOtntAXGKlYFc\n\
O+4Us+qDgvKt4oCzR6AcCD57/piIJ9i8ykoO4JtahFW4Sjyi628U6vfbZxcSuclQ\n\
WeLd+a5bNBFC092AvKVok6gheGTfuHVt24rkroJuFEB+2rBt55WcK1FuWQGrLQps\n\
bFxbITfMCLjaC98Gr1XzU9m8ib8UUIeMGZ03X14la644GgFJ0NOEjEu64cU6cV+h\n\
IhKt/pJxJeHRUjRcukRZ1d1C461TbOXtWxtupf9hJQKBgQDyhLuCNNUR0QbF67wC\n\
bR20fR6+W0AEsOZ3Bf8pl3kI3XP5PFRXhBNE5RqadgRw6c3F3t3WVXxaALEOzBPi\n\
RwWPJrbV4dccet6XAmmG1yrUqum9Qw7oRoH9bYwe71zMxHxDzMWlNgfZ4S3IvwKX\n\
gKLAx8EkrshHec1QEEwTbwUepwKBgQDRfPIwHLShu2Jstn/kNVhpnv7mGylS9Noe\n\
5bD0KZ7FzhrRKHC0JTHTEf6r8VdNW8/6Kp90h5oZ3j4hBG3MHO+mKswzs58Pdn0L\n\
BqWs2fURanpbFy8u8Grfh0G4pEPDvf0A3wfSjjxJckVYgfEQ9DY61icpxIyIfYTK\n\
CzMir2qDdwKBgQDaihOyjMtoh7UTy48bnJqFF68JmI8C6ypzHTtHjpDqFS057kyO\n\
pJz8m3uyryDnYzkj0uaTC2vIaxEipXJRmPCAhEGEUUQYDPzilbDkaqbVB8Mj4vbf\n\
BxKCfiIjik1U1MaqDjAY5ayDgXBRkxbR0YBYOmlpFfuytSb3vAfiB0xUxwKBgE5V\n\
RFKNSVX4tbMlAumYsPi9xV7R5T/p4u4OwX5rWb1pdkmjr5ENH3Znki1FT3nTzQ8k\n\
hP+T/SGTIvRBrbTXVR1zf2wNzHqBufw3fhgGYEck45/QKYqJx8zRzNd4RQaaslJz\n\
E3++Q/jKy/duj2/hga26imZp4orfNJpAWdysb029AoGBANxEgmtY4j0vOe7lalL9\n\
067KUzlQBFQ/degc3AT+7ULNiG3TPmC2ngs854p6xMbv+j6O2G6Ijk4Y3PCYMtg9\n\
JNYyXhidXUb95V76VNYvA+ASI+ce0lrUJS+OLvAxXka3ALugEs1DJNyPPlY0TN3V\n\
hbXrBZ6T1onacP/L+ZlwYV/9\n\
-----END PRIVATE KEY-----\n\
";

/// Self-signed X.509 certificate of the test key (CN=switchboard-salesforce-simulator-test),
/// as an admin would upload it to the connected app.
pub const CERTIFICATE_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIDQzCCAiugAwIBAgIUaFnmJOoW94Z50UOn44mCJDumh2QwDQYJKoZIhvcNAQEL\n\
BQAwMDEuMCwGA1UEAwwlc3dpdGNoYm9hcmQtc2FsZXNmb3JjZS1zaW11bGF0b3It\n\
dGVzdDAgFw0yNjExMjUwMDM1MzZaGA8yMTI2MTEwMTAwMzUzNlowMDEuMCwGA1UE\n\
Awwlc3dpdGNoYm9hcmQtc2FsZXNmb3JjZS1zaW11bGF0b3ItdGVzdDCCASIwDQYJ\n\
KoZIhvcNAQEBBQADggEPADCCAQoCggEBAMZ0us8tiWworgXor38PQ6TGE8115Gka\n\
yAwSrIOs7GdCiErplfhVcUAsDP/nxZ7UQZC0VH5tPq8sbOoauAwOizKOCjQQd6h4\n\
0Bm3wUcQOzJeiIRMOxkpILAwG4CqJV2n+geNk9kGiw7Pv76aJBWY6t04P8jtoOLT\n\
eXwuABa++Wubh1T/89ju0JMdZEUFRIy2NXlVMDDWu31V3NYWwyybSVcXYkjvgIvc\n\
2cOnpKCVE5v5oYeLsOLNlojO/Tnz5ZVEKZLmyn8xgq2Ft7hSLdY6JRsUVqlbz456\n\
jBOxV2ObtN6ZZdnYKw5SLs0FTPhQtV33Ss9yXhxMYRtgMmgeGRQ2tKECAwEAAaNT\n\
MFEwHQYDVR0OBBYEFNLO95lIRp8wtnrPpxjBvTgsHAaRMB8GA1UdIwQYMBaAFNLO\n\
95lIRp8wtnrPpxjBvTgsHAaRMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZIhvcNAQEL\n\
BQADggEBADUOCacjQ53Odh41q7VdtGqOsc2G1R+uPlUVnsZl6KNZptrkVikTuxys\n\
uxmlpbH0PROy8VlSGjHX0kUr9kQeN7nv6NTA/AmGh66xV6hg7Ri+6iP79V9yafbU\n\
D6maXaNFFft+h8943MY9qbTRBa+D9s5UdLFBeQ5kQHXj0SyUuTEEvS2JCBtYNj/b\n\
z9cTwbQCbTVlv50iq7xL62HV0yoEWN8Pptp17nyuH9ev30CjFGSKezy438XQkpnj\n\
m216ANCk8tGGEHHyRWkerK5lUXNe7LFPSZT6RekbDidJPpy9GcKGz8uDCJSTE69o\n\
UnEHhaO2/70XOad0ZE2Hxx/g4IVxcS0=\n\
-----END CERTIFICATE-----\n\
";
