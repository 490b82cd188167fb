export { createKeyAndCsr, parseCsr, PkiError, type KeyAndCsr, type ParsedCsr } from "./csr";
export {
  CertificateAuthority,
  EKU_CLIENT_AUTH,
  EKU_OCF_IDENTITY,
  EKU_SERVER_AUTH,
  issueCertificate,
  selfSignedCa,
  type CertificateTemplate,
  type KeyUsage,
  type SigningIdentity,
} from "./signer";
export { verifyChain, validityMidpoint, type ChainOptions, type ChainResult } from "./verify";
export {
  certificateState,
  renewalDelayMs,
  DEFAULT_EXPIRING_LIMIT_S,
  type CertificateState,
} from "./validity";
export { parseCertificates, splitCertificates, toPem } from "./pem";
export { ensureDemoPki, type DemoPki } from "./demo-pki";
