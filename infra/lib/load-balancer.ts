import { Duration, Token, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import type { Construct } from 'constructs';
import { ipv4Block, parseIpv4 } from './cidr.js';
import { FlatConstruct } from './flat-construct.js';
import { GATEWAY_HTTP_PORT, GATEWAY_TFTP_PORT, TFTP_PORT } from './settings.js';

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
}

/**
 * The traffic path: an internal Network Load Balancer with one UDP listener on 69, the target
 * group (UDP 6969, HTTP health checks on 9464), and the security groups of the load balancer and
 * of the tasks behind it.
 */
export class GatewayLoadBalancer extends FlatConstruct {
  readonly loadBalancer: elbv2.NetworkLoadBalancer;
  readonly targetGroup: elbv2.NetworkTargetGroup;
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
    for (const cidr of props.clientCidrs) {
      nlbSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.udp(TFTP_PORT), 'TFTP from a client network');
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

    this.targetGroup = new elbv2.NetworkTargetGroup(this.host, 'TargetGroup', {
      vpc,
      port: GATEWAY_TFTP_PORT,
      protocol: elbv2.Protocol.UDP,
      targetType: elbv2.TargetType.IP,
      deregistrationDelay: props.deregistrationDelay,
      healthCheck: {
        enabled: true,
        protocol: elbv2.Protocol.HTTP,
        port: String(GATEWAY_HTTP_PORT),
        path: '/healthz',
        healthyHttpCodes: '200',
        interval: Duration.seconds(10),
        timeout: Duration.seconds(5),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
    });
    this.loadBalancer.addListener('Tftp', {
      port: TFTP_PORT,
      protocol: elbv2.Protocol.UDP,
      defaultTargetGroups: [this.targetGroup],
    });

    Validations.of(this.loadBalancer).acknowledge({
      id: 'AwsSolutions-ELB2',
      reason: 'Network Load Balancer access logs exist only for TLS listeners; this one has a single UDP listener. Transfers are logged by the gateway (JSON lines in CloudWatch Logs) and rejected flows by VPC flow logs.',
    });
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
