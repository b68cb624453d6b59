import React from 'react';

export function hello() {
  return 'hello from the demo';
}
