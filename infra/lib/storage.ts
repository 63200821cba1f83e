import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { FlatConstruct } from './flat-construct.js';
import { acknowledgeWildcardResources } from './nag.js';

export interface GatewayBucketProps {
  /** Serve this existing bucket instead of creating one. */
  readonly bucketName?: string;
  /** KMS key of the existing bucket (SSE-KMS); only with `bucketName`. */
  readonly bucketKmsKeyArn?: string;
  /** Encryption of a created bucket: SSE-S3, or SSE-KMS with a new customer managed key. */
  readonly encryption: 's3' | 'kms';
  /** Destination of a created bucket's server access logs; called only when this construct creates the bucket. */
  readonly accessLogBucket: () => s3.IBucket;
}

/** What the gateway's tasks may do in the bucket. */
export interface GatewayBucketAccess {
  /** The served prefix ('' or ending in '/'): reads are allowed under it. */
  readonly prefix: string;
  /** Allow writes, under `writePrefixes` (relative to `prefix`) only. */
  readonly allowWrite: boolean;
  readonly writePrefixes: readonly string[];
}

/** The served bucket (created, or imported) and its KMS key, if any. */
export class GatewayBucket extends FlatConstruct {
  readonly bucket: s3.IBucket;
  /** The key that encrypts the bucket (SSE-KMS); undefined for SSE-S3. */
  readonly key: kms.IKey | undefined;

  constructor(scope: Construct, id: string, props: GatewayBucketProps) {
    super(scope, id);
    if (props.bucketName !== undefined) {
      this.key = props.bucketKmsKeyArn !== undefined ? kms.Key.fromKeyArn(this.host, 'BucketKey', props.bucketKmsKeyArn) : undefined;
      this.bucket = s3.Bucket.fromBucketAttributes(this.host, 'Bucket', {
        bucketName: props.bucketName,
        ...(this.key ? { encryptionKey: this.key } : {}),
      });
      return;
    }
    const accessLogBucket = props.accessLogBucket();
    this.key =
      props.encryption === 'kms'
        ? new kms.Key(this.host, 'BucketKey', {
            description: 'Encrypts the TFTP gateway bucket',
            enableKeyRotation: true,
            removalPolicy: RemovalPolicy.RETAIN,
          })
        : undefined;
    this.bucket = new s3.Bucket(this.host, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      encryption: this.key ? s3.BucketEncryption.KMS : s3.BucketEncryption.S3_MANAGED,
      ...(this.key ? { encryptionKey: this.key, bucketKeyEnabled: true } : {}),
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      lifecycleRules: [{ id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) }],
      serverAccessLogsBucket: accessLogBucket,
      serverAccessLogsPrefix: 'bucket-access-logs/',
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  /** Least-privilege S3 (and KMS) access for the gateway's tasks. */
  grantGatewayAccess(role: iam.IRole, access: GatewayBucketAccess): void {
    const readResource = this.bucket.arnForObjects(`${access.prefix}*`);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadServedObjects', actions: ['s3:GetObject'], resources: [readResource] }),
    );
    // Without ListBucket, S3 answers 403 instead of 404 for a missing key, and the gateway could not say "file not found".
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ListBucketFor404', actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
    );
    const acks = [{ resource: readResource, reason: 'Reads are limited to objects under the served prefix; object names are chosen by the operator at upload time.' }];
    if (access.allowWrite) {
      const writeResources = access.writePrefixes.map((p) => this.bucket.arnForObjects(`${access.prefix}${p}*`));
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'WriteUploadPrefixes',
          actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
          resources: writeResources,
        }),
      );
      for (const resource of writeResources) {
        acks.push({ resource, reason: 'Writes are limited to the configured write prefixes; the file names are chosen by the TFTP clients.' });
      }
    }
    if (this.key) {
      const viaS3 = { StringEquals: { 'kms:ViaService': `s3.${this.bucket.env.region}.amazonaws.com` } };
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'BucketKeyViaS3',
          actions: access.allowWrite ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'],
          resources: [this.key.keyArn],
          conditions: viaS3,
        }),
      );
    }
    acknowledgeWildcardResources(role, acks);
  }
}

/** Bucket for S3 server access logs and VPC flow logs (only when the stack creates the bucket or the VPC). */
export function createLogBucket(scope: Construct): s3.Bucket {
  const bucket = new s3.Bucket(scope, 'LogBucket', {
    blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
    encryption: s3.BucketEncryption.S3_MANAGED,
    enforceSSL: true,
    minimumTLSVersion: 1.2,
    lifecycleRules: [
      { id: 'expire-logs', expiration: Duration.days(90) },
      { id: 'abort-incomplete-multipart-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
    ],
    removalPolicy: RemovalPolicy.RETAIN,
  });
  Validations.of(bucket).acknowledge({
    id: 'AwsSolutions-S1',
    reason: 'This bucket is the destination of the access logs and flow logs; logging its own access would log the log deliveries.',
  });
  return bucket;
}
