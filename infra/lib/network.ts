import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { FlatConstruct } from './flat-construct.js';

export interface GatewayNetworkProps {
  /** Look up this existing VPC (needs the stack's account and region) instead of creating one. */
  readonly vpcId?: string;
  /** CIDR of a created VPC. */
  readonly vpcCidr: string;
  /** Availability zones of a created VPC. */
  readonly maxAzs: number;
  /** NAT gateways of a created VPC. */
  readonly natGateways: number;
  /** Add an S3 gateway endpoint to the private subnets. */
  readonly s3GatewayEndpoint: boolean;
  /** Destination of a created VPC's flow logs; called only when this construct creates the VPC. */
  readonly flowLogBucket: () => s3.IBucket;
}

/** The VPC (created with rejected-traffic flow logs, or looked up) and its S3 gateway endpoint. */
export class GatewayNetwork extends FlatConstruct {
  readonly vpc: ec2.IVpc;
  /** The private subnets (with egress): the tasks, the load balancer and the S3 endpoint use them. */
  readonly privateSubnets: ec2.SelectedSubnets;
  /**
   * The VPC's CIDR: the literal one of a created VPC (cdk-nag's open-ingress check cannot read a
   * token), the looked-up one of an imported VPC.
   */
  readonly vpcCidr: string;

  constructor(scope: Construct, id: string, props: GatewayNetworkProps) {
    super(scope, id);
    if (props.vpcId !== undefined) {
      this.vpc = ec2.Vpc.fromLookup(this.host, 'Vpc', { vpcId: props.vpcId });
      this.vpcCidr = this.vpc.vpcCidrBlock;
    } else {
      const flowLogBucket = props.flowLogBucket();
      const vpc = new ec2.Vpc(this.host, 'Vpc', {
        ipAddresses: ec2.IpAddresses.cidr(props.vpcCidr),
        maxAzs: props.maxAzs,
        natGateways: props.natGateways,
        subnetConfiguration: [
          { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
          { name: 'private', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
        ],
      });
      vpc.addFlowLog('FlowLogs', {
        destination: ec2.FlowLogDestination.toS3(flowLogBucket, 'vpc-flow-logs/'),
        trafficType: ec2.FlowLogTrafficType.REJECT,
      });
      this.vpc = vpc;
      this.vpcCidr = props.vpcCidr;
    }
    this.privateSubnets = this.vpc.selectSubnets({ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS });
    if (props.s3GatewayEndpoint) {
      this.vpc.addGatewayEndpoint('S3Endpoint', {
        service: ec2.GatewayVpcEndpointAwsService.S3,
        subnets: [{ subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS }],
      });
    }
  }
}
