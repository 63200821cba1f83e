import { Arn, ArnFormat, CfnResource, Duration, Stack, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { ipv4Block, parseIpv4 } from './cidr.js';
import { FlatConstruct } from './flat-construct.js';
import { GATEWAY_HTTP_PORT, GATEWAY_TFTP_PORT, HTTPS_BOOT_PORT, TFTP_PORT, type HttpBootSettings } from './settings.js';

/** Where the load balancer's access logs go (TLS listeners only), under the log bucket. */
export const NLB_ACCESS_LOG_PREFIX = 'nlb-access-logs';

export interface GatewayLoadBalancerProps {
  readonly vpc: ec2.IVpc;
  /** The private subnets the load balancer is placed in. */
  readonly privateSubnets: ec2.SelectedSubnets;
  /** Networks allowed to reach UDP 69 (literal IPv4 CIDRs, or tokens). */
  readonly clientCidrs: readonly string[];
  /** Fixed private IPv4 addresses, one per private subnet in subnet order; empty: chosen by AWS. */
  readonly privateIps: readonly string[];
  /** How long a deregistering task keeps its flows (the longest expected transfer). */
  readonly deregistrationDelay: Duration;
  /**
   * Path of the targets' HTTP health check on the ops port: /healthz (liveness), or /readyz when tasks
   * warm their caches before serving (a warming task answers 503 there and gets no traffic).
   */
  readonly healthCheckPath: '/healthz' | '/readyz';
  /** HTTP boot: a TCP listener (and an HTTPS one with a certificate) to the container's HTTP boot port; undefined: none. */
  readonly httpBoot: HttpBootSettings | undefined;
  /** Destination of the access logs an HTTPS listener enables; called only then. */
  readonly accessLogBucket: () => s3.IBucket;
}

/**
 * The traffic path: an internal Network Load Balancer with one UDP listener on 69, the target
 * group (UDP 6969, HTTP health checks on 9464), and the security groups of the load balancer and
 * of the tasks behind it. With HTTP boot, a TCP listener (80) and optionally a TLS one (443, the load
 * balancer terminates TLS) forward to a second target group, TCP on the container's HTTP boot port.
 */
export class GatewayLoadBalancer extends FlatConstruct {
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly targetGroup: elbv2.NetworkTargetGroup;
  /** HTTP boot's target group (TCP, the container's HTTP boot port), when HTTP boot is on. */
  readonly httpBootTargetGroup: elbv2.NetworkTargetGroup | undefined;
  /** Security group of the load balancer: UDP 69 in from the client networks, out only to the tasks. */
  readonly loadBalancerSecurityGroup: ec2.SecurityGroup;
  /** Security group for the tasks: TFTP and health checks from the load balancer, HTTPS out. */
  readonly serviceSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: GatewayLoadBalancerProps) {
    super(scope, id);
    const { vpc } = props;

    // ------------------------------------------------------ security groups
    const nlbSecurityGroup = new ec2.SecurityGroup(this.host, 'NlbSecurityGroup', {
      vpc,
      allowAllOutbound: false,
      description: 'TFTP gateway load balancer: UDP 69 from the client networks only',
    });
    const { httpBoot } = props;
    for (const cidr of props.clientCidrs) {
      nlbSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.udp(TFTP_PORT), 'TFTP from a client network');
      if (httpBoot) {
        nlbSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(httpBoot.port), 'HTTP boot from a client network');
        if (httpBoot.tls) nlbSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(HTTPS_BOOT_PORT), 'HTTPS boot from a client network');
      }
    }
    const serviceSecurityGroup = new ec2.SecurityGroup(this.host, 'ServiceSecurityGroup', {
      vpc,
      allowAllOutbound: false,
      description: 'TFTP gateway tasks: TFTP and health checks from the load balancer; HTTPS out',
    });
    serviceSecurityGroup.addIngressRule(nlbSecurityGroup, ec2.Port.udp(GATEWAY_TFTP_PORT), 'TFTP from the load balancer');
    serviceSecurityGroup.addIngressRule(nlbSecurityGroup, ec2.Port.tcp(GATEWAY_HTTP_PORT), 'Health checks from the load balancer');
    serviceSecurityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to S3, ECR, CloudWatch Logs and the Prometheus workspace');
    nlbSecurityGroup.addEgressRule(serviceSecurityGroup, ec2.Port.udp(GATEWAY_TFTP_PORT), 'TFTP to the tasks');
    nlbSecurityGroup.addEgressRule(serviceSecurityGroup, ec2.Port.tcp(GATEWAY_HTTP_PORT), 'Health checks to the tasks');
    if (httpBoot) {
      serviceSecurityGroup.addIngressRule(nlbSecurityGroup, ec2.Port.tcp(httpBoot.containerPort), 'HTTP boot from the load balancer');
      nlbSecurityGroup.addEgressRule(serviceSecurityGroup, ec2.Port.tcp(httpBoot.containerPort), 'HTTP boot to the tasks');
    }
    // The two rules above are separate resources; without an inline rule CloudFormation would give the
    // group its default allow-all egress. This inline rule matches no traffic and keeps egress closed.
    nlbSecurityGroup.addEgressRule(ec2.Peer.ipv4('255.255.255.255/32'), ec2.Port.icmpTypeAndCode(252, 86), 'Disallow all other traffic');
    this.loadBalancerSecurityGroup = nlbSecurityGroup;
    this.serviceSecurityGroup = serviceSecurityGroup;

    // ---------------------------------------------------------- load balancer
    const privateIps = props.privateIps;
    this.loadBalancer = new elbv2.NetworkLoadBalancer(this.host, 'Nlb', {
      vpc,
      internetFacing: false,
      crossZoneEnabled: true,
      securityGroups: [nlbSecurityGroup],
      ...(privateIps.length > 0
        ? {
            subnetMappings: props.privateSubnets.subnets.map((subnet, i) => ({
              subnet,
              privateIpv4Address: privateIps[i]!,
            })),
          }
        : { vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } }),
    });
    if (privateIps.length > 0) {
      checkFixedIps(privateIps, props.privateSubnets.subnets);
    }

    // Both target groups ask the same endpoint on the ops port: a task that serves TFTP serves HTTP
    // (one process). /healthz (liveness) stays 200 while S3 is away (cached files still boot). With
    // warm-up it is /readyz: 503 "warming" keeps a cold task out until its caches are filled (or the
    // warm timeout passed); /readyz also stays 200 during an S3 outage while the task holds cached
    // content. A target that is not yet healthy just gets no traffic: replacing it is ECS's call,
    // held off by the service's health check grace period, which covers the warm timeout.
    const healthCheck: elbv2.HealthCheck = {
      enabled: true,
      protocol: elbv2.Protocol.HTTP,
      port: String(GATEWAY_HTTP_PORT),
      path: props.healthCheckPath,
      healthyHttpCodes: '200',
      interval: Duration.seconds(10),
      timeout: Duration.seconds(5),
      healthyThresholdCount: 2,
      unhealthyThresholdCount: 2,
    };
    this.targetGroup = new elbv2.NetworkTargetGroup(this.host, 'TargetGroup', {
      vpc,
      port: GATEWAY_TFTP_PORT,
      protocol: elbv2.Protocol.UDP,
      targetType: elbv2.TargetType.IP,
      deregistrationDelay: props.deregistrationDelay,
      healthCheck,
    });
    this.loadBalancer.addListener('Tftp', {
      port: TFTP_PORT,
      protocol: elbv2.Protocol.UDP,
      defaultTargetGroups: [this.targetGroup],
    });

    if (httpBoot) {
      this.httpBootTargetGroup = new elbv2.NetworkTargetGroup(this.host, 'HttpBootTargetGroup', {
        vpc,
        port: httpBoot.containerPort,
        protocol: elbv2.Protocol.TCP,
        targetType: elbv2.TargetType.IP,
        deregistrationDelay: props.deregistrationDelay,
        // IP targets of a TCP group see the load balancer's address unless this is on; the gateway's
        // per-client policy, caps and logs need the client's (UDP targets always keep it).
        preserveClientIp: true,
        healthCheck,
      });
      this.loadBalancer.addListener('HttpBoot', {
        port: httpBoot.port,
        protocol: elbv2.Protocol.TCP,
        defaultTargetGroups: [this.httpBootTargetGroup],
      });
      if (httpBoot.tls) {
        this.loadBalancer.addListener('HttpsBoot', {
          port: HTTPS_BOOT_PORT,
          protocol: elbv2.Protocol.TLS,
          certificates: [elbv2.ListenerCertificate.fromArn(httpBoot.tls.certificateArn)],
          sslPolicy: httpBoot.tls.policy,
          defaultTargetGroups: [this.httpBootTargetGroup],
        });
        this.logTlsAccess(props.accessLogBucket());
      }
    }

    if (!httpBoot?.tls) {
      Validations.of(this.loadBalancer).acknowledge({
        id: 'AwsSolutions-ELB2',
        reason: `Network Load Balancer access logs exist only for TLS listeners; this one has ${httpBoot ? 'a UDP and a TCP listener' : 'a single UDP listener'}. Transfers are logged by the gateway (JSON lines in CloudWatch Logs) and rejected flows by VPC flow logs.`,
      });
    }
  }

  /**
   * Access logs of the TLS listener (handshake failures from firmware show up here first: protocol,
   * cipher, the client's TLS alert). ELBv2's `logAccessLogs` needs a concrete region; Network Load
   * Balancers deliver through the log delivery service in every region, so this grants just that.
   */
  private logTlsAccess(bucket: s3.IBucket): void {
    const lb = this.loadBalancer;
    lb.setAttribute('access_logs.s3.enabled', 'true');
    lb.setAttribute('access_logs.s3.bucket', bucket.bucketName);
    lb.setAttribute('access_logs.s3.prefix', NLB_ACCESS_LOG_PREFIX);
    const stack = Stack.of(this);
    const delivery = new iam.ServicePrincipal('delivery.logs.amazonaws.com');
    const fromThisAccount = { 'aws:SourceAccount': stack.account };
    const fromLogDelivery = { 'aws:SourceArn': Arn.format({ service: 'logs', resource: '*', arnFormat: ArnFormat.NO_RESOURCE_NAME }, stack) };
    bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'NlbAccessLogDelivery',
        principals: [delivery],
        actions: ['s3:PutObject'],
        resources: [bucket.arnForObjects(`${NLB_ACCESS_LOG_PREFIX}/AWSLogs/${stack.account}/*`)],
        conditions: { StringEquals: { 's3:x-amz-acl': 'bucket-owner-full-control', ...fromThisAccount }, ArnLike: fromLogDelivery },
      }),
    );
    bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'NlbAccessLogAclCheck',
        principals: [delivery],
        actions: ['s3:GetBucketAcl'],
        resources: [bucket.bucketArn],
        conditions: { StringEquals: fromThisAccount, ArnLike: fromLogDelivery },
      }),
    );
    // The load balancer checks the bucket's policy when it turns logging on.
    const policy = bucket.policy?.node.defaultChild;
    if (policy instanceof CfnResource) (lb.node.defaultChild as CfnResource).addResourceDependency(policy);
  }
}

/** The NLB needs one address per subnet, inside that subnet, clear of the 4 reserved first and the last address. */
function checkFixedIps(ips: readonly string[], subnets: ec2.ISubnet[]): void {
  if (ips.length !== subnets.length) {
    throw new Error(`nlbPrivateIps: give one address per private subnet (${subnets.length}), in subnet order (got ${ips.length})`);
  }
  ips.forEach((ip, i) => {
    const cidr = subnets[i]!.ipv4CidrBlock;
    if (Token.isUnresolved(cidr)) return;
    const range = ipv4Block(cidr);
    const addr = parseIpv4(ip)!;
    if (!range || addr < range.base + 4 || addr >= range.base + range.size - 1) {
      throw new Error(`nlbPrivateIps: ${ip} is not a usable address of subnet ${i + 1} (${cidr})`);
    }
  });
}
