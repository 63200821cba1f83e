#!/usr/bin/env node
// CDK app entry (cdk.json "app"). Thin on purpose: context in, one stack out, cdk-nag on.
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { configFromContext } from '../lib/context.js';
import { TftpGatewayStack } from '../lib/tftp-gateway-stack.js';

const app = new App();
const { stackName, props } = configFromContext((key) => app.node.tryGetContext(key));
new TftpGatewayStack(app, stackName, props);
// Synthesis fails on any AwsSolutions finding that the stack does not acknowledge with a reason.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
